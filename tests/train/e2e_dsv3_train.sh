#!/usr/bin/env bash
# End to end through the real executable: dsv3_train on 2 MPI ranks, inputs/debug_model.toml with a few steps on a
# synthetic token dataset; then a bad config, which must fail before any work with one message naming the key.
#   e2e_dsv3_train.sh SOURCE_DIR DSV3_TRAIN MAKE_TEST_DATASET MPIEXEC [MPIEXEC FLAGS...]
set -euo pipefail
source_dir="$1" trainer="$2" make_dataset="$3"
shift 3
mpiexec=("$@" -n 2)

work="$(mktemp -d "${TMPDIR:-/tmp}/dsv3-e2e-train.XXXXXX")"
trap 'rm -rf "$work"' EXIT
fail() { echo "e2e_dsv3_train: FAILED: $*" >&2; exit 1; }

"$make_dataset" "$work/data.h5" 200

common=(--training.device=cpu --job.config_file "$source_dir/inputs/debug_model.toml" --training.dataset_path="$work/data.h5"
        --model.hf_assets_path "" --job.dump_folder="$work/outputs" --metrics.peak_tflops=1)
"${mpiexec[@]}" "$trainer" "${common[@]}" --training.steps=3 --lr_scheduler.warmup_steps=1 --training.seq_len=32 \
  --training.local_batch_size=2 --metrics.log_freq=1 --validation.enable --validation.steps=1 \
  >"$work/stdout" 2>"$work/stderr" || { status=$?; cat "$work/stdout" "$work/stderr"; fail "dsv3_train exited with $status"; }
cat "$work/stdout"
grep -q "^step 3/3  loss" "$work/stdout" || fail "no line for step 3 of 3"
grep -q "^FLOPs per token: " "$work/stdout" || fail "the FLOPs formula is not stated"
grep -q "^validation at step 3: loss" "$work/stdout" || fail "no validation after the last step"
metrics=("$work"/outputs/runs/*/metrics.jsonl)
[ -f "${metrics[0]}" ] || fail "no metrics.jsonl under $work/outputs/runs"
[ "$(grep -c '"kind": "train"' "${metrics[0]}")" -eq 3 ] || fail "metrics.jsonl lacks 3 training records"
[ "$(grep -c '"kind": "run"' "${metrics[0]}")" -eq 1 ] || fail "metrics.jsonl lacks its run record"
# A clean run prints nothing on stderr: no library diagnostics at exit (HDF5 closing handles after MPI_Finalize).
[ ! -s "$work/stderr" ] || { cat "$work/stderr"; fail "a successful run wrote to stderr"; }

if "${mpiexec[@]}" "$trainer" "${common[@]}" --training.steps=-1 >"$work/stdout" 2>"$work/stderr"; then
  fail "dsv3_train accepted training.steps = -1"
fi
[ "$(grep -c "dsv3_train: error on rank 0: .*training.steps = -1 must be positive" "$work/stderr")" -eq 1 ] ||
  { cat "$work/stderr"; fail "a bad config did not give one error naming training.steps"; }
echo "e2e_dsv3_train: passed"
