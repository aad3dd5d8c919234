#!/usr/bin/env bash
# Faults end the whole job with the failing rank's message printed once and a non-zero exit, never a hang
# (issue 5 "Bad input and faults"), on 2 MPI ranks:
#   1. rank 1 throws in setup, or while rank 0 waits for it in a collective (failing_rank);
#   2. dsv3_train given another config on each rank (MPMD command line);
#   3. dsv3_train whose training data exists only where rank 0 runs (a failure on one rank after the collectives of
#      setup).
#   e2e_faults.sh SOURCE_DIR DSV3_TRAIN MAKE_TEST_DATASET FAILING_RANK MPIEXEC [MPIEXEC FLAGS...]
set -uo pipefail
source_dir="$1" trainer="$2" make_dataset="$3" failing_rank="$4"
shift 4
mpiexec=("$@")

work="$(mktemp -d "${TMPDIR:-/tmp}/dsv3-e2e-faults.XXXXXX")"
trap 'rm -rf "$work"' EXIT
fail() { echo "e2e_faults: FAILED: $*" >&2; exit 1; }

# expect_failure NAME PATTERN COMMAND...: the command exits non-zero within 120 s and its stderr holds PATTERN once.
expect_failure() {
  local name="$1" pattern="$2"
  shift 2
  timeout 120 "$@" >"$work/stdout" 2>"$work/stderr"
  local status=$?
  [ "$status" -ne 124 ] || fail "$name: hung (killed after 120 s)"
  [ "$status" -ne 0 ] || fail "$name: exited with status 0"
  [ "$(grep -c -- "$pattern" "$work/stderr")" -eq 1 ] ||
    { cat "$work/stdout" "$work/stderr"; fail "$name: stderr does not hold '$pattern' exactly once"; }
  echo "e2e_faults: $name: exit $status, one message: $(grep -- "$pattern" "$work/stderr")"
}

expect_failure "throw in setup" "failing_rank: error on rank 1: injected failure in setup" \
  "${mpiexec[@]}" -n 2 "$failing_rank" setup
expect_failure "throw while the other rank waits" "failing_rank: error on rank 1: injected failure in work" \
  "${mpiexec[@]}" -n 2 "$failing_rank" work

mkdir -p "$work/rank0" "$work/rank1"
"$make_dataset" "$work/rank0/data.h5" 40 || fail "make_test_dataset"
common=(--training.device=cpu --job.config_file "$source_dir/inputs/debug_model.toml" --training.dataset_path=data.h5 --model.hf_assets_path ""
        --job.dump_folder="$work/outputs" --metrics.peak_tflops=1 --training.seq_len=32 --lr_scheduler.warmup_steps=1 --validation.enable=false)
expect_failure "config differing between ranks" \
  "dsv3_train: error on rank 0: the job config differs between ranks: rank 1 has 'steps = 3' where rank 0 has 'steps = 2'" \
  "${mpiexec[@]}" -wdir "$work/rank0" -n 1 "$trainer" "${common[@]}" --training.steps=2 : \
  -wdir "$work/rank0" -n 1 "$trainer" "${common[@]}" --training.steps=3
expect_failure "data missing on rank 1" "dsv3_train: error on rank 1: training.dataset_path = 'data.h5'" \
  "${mpiexec[@]}" -wdir "$work/rank0" -n 1 "$trainer" "${common[@]}" --training.steps=3 : \
  -wdir "$work/rank1" -n 1 "$trainer" "${common[@]}" --training.steps=3
echo "e2e_faults: passed"
