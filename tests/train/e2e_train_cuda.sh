#!/usr/bin/env bash
# dsv3_train on one GPU against the CPU reference (label gpu): the debug model for 10 steps on 1 rank, once with
# training.device = cpu and once with cuda, must log the same losses within 2% (the GPU multiplies in bf16 on the
# tensor cores, the CPU in fp32); then a GPU run resumed from its step-5 checkpoint must log the losses of the run
# that wrote it for steps 6..10 within 1e-4 relative (the GPU kernels add in a fixed order).
#   e2e_train_cuda.sh SOURCE_DIR DSV3_TRAIN MAKE_TEST_DATASET MPIEXEC [MPIEXEC FLAGS...]
set -euo pipefail
source_dir="$1" trainer="$2" make_dataset="$3"
shift 3
mpiexec=("$@" -n 1)

work="$(mktemp -d "${TMPDIR:-/tmp}/dsv3-e2e-cuda.XXXXXX")"
trap 'rm -rf "$work"' EXIT
fail() { echo "e2e_train_cuda: FAILED: $*" >&2; exit 1; }

"$make_dataset" "$work/data.h5" 400
common=(--job.config_file "$source_dir/inputs/debug_model.toml" --training.dataset_path="$work/data.h5"
        --model.hf_assets_path "" --training.steps=10 --lr_scheduler.warmup_steps=2 --training.seq_len=64
        --training.local_batch_size=4 --metrics.log_freq=1 --validation.enable=false)
run() {  # run NAME DEVICE FOLDER [overrides...]: stdout to $work/NAME.out
  local name="$1" device="$2" folder="$3"
  shift 3
  "${mpiexec[@]}" "$trainer" "${common[@]}" --training.device="$device" --job.dump_folder="$work/$folder" "$@" \
    >"$work/$name.out" 2>&1 || { status=$?; cat "$work/$name.out"; fail "dsv3_train ($name) exited with $status"; }
}
losses() { grep -o '^step  *[0-9]*/10  loss  *[0-9.]*' "$1" | awk '{print $2, $4}'; }
# close A B TOLERANCE: the losses of every step both logged agree within TOLERANCE relative.
close() {
  join <(losses "$1" | sort) <(losses "$2" | sort) | awk -v tol="$3" '
    { n++; d = $2 - $3; if (d < 0) d = -d; if (d > tol * $3) { print "step " $1 ": " $2 " vs " $3; bad++ } }
    END { exit (n == 0 || bad > 0) }'
}

run cpu cpu cpu
run cuda cuda cuda
cat "$work/cuda.out"
[ "$(losses "$work/cuda.out" | wc -l)" -eq 10 ] || fail "the GPU run did not log 10 steps"
close "$work/cpu.out" "$work/cuda.out" 0.02 || fail "GPU losses differ from the CPU reference by more than 2%"

run written cuda checkpointed --checkpoint.enable --checkpoint.interval=5
rm "$work/checkpointed/checkpoint/step-10.h5"
run resumed cuda checkpointed --checkpoint.enable --checkpoint.interval=5
grep -q "checkpoint: resumed from .*step-5.h5 at step 5" "$work/resumed.out" || { cat "$work/resumed.out"; fail "no resume"; }
close "$work/written.out" "$work/resumed.out" 1e-4 || fail "the resumed GPU run's losses differ from the run that wrote it"
echo "e2e_train_cuda: passed"
