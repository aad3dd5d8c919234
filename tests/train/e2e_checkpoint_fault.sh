#!/usr/bin/env bash
# A job killed while it writes a checkpoint loses only the steps since its last complete checkpoint (issue 6
# "Fault"): dsv3_train on 2 MPI ranks, the debug model, a checkpoint every 2 of 4 steps. While writing the checkpoint of
# step 4, both ranks stop half-way through the datasets (the test-only DSV3_TEST_CHECKPOINT_STALL_* hook of
# lib/dsv3/train/checkpoint.cpp) and rank 1 gets SIGKILL. Then the same command resumes from step 2's checkpoint
# (the partial file of step 4 ignored and removed) and reaches the losses that the killed run had logged for steps 3
# and 4 before it was killed, step for step.
#   e2e_checkpoint_fault.sh SOURCE_DIR DSV3_TRAIN MAKE_TEST_DATASET MPIEXEC [MPIEXEC FLAGS...]
set -uo pipefail
source_dir="$1" trainer="$2" make_dataset="$3"
shift 3
mpiexec=("$@" -n 2)

work="$(mktemp -d "${TMPDIR:-/tmp}/dsv3-e2e-checkpoint.XXXXXX")"
trap 'rm -rf "$work"' EXIT
fail() { echo "e2e_checkpoint_fault: FAILED: $*" >&2; exit 1; }

"$make_dataset" "$work/data.h5" 200 || fail "make_test_dataset"
# run DUMP_FOLDER: the debug model for 4 steps, a full checkpoint every 2 steps.
run() {
  "${mpiexec[@]}" "$trainer" --training.device=cpu --job.config_file "$source_dir/inputs/debug_model.toml" \
    --training.dataset_path="$work/data.h5" --model.hf_assets_path "" --job.dump_folder="$1" \
    --metrics.peak_tflops=1 --metrics.log_freq=1 --validation.enable=false --training.steps=4 \
    --lr_scheduler.warmup_steps=1 --training.seq_len=32 --training.local_batch_size=2 \
    --checkpoint.enable --checkpoint.interval=2 --checkpoint.last_save_model_only=false
}
losses() { grep -o '^step  *[0-9]*/4  loss  *[0-9.]*' "$1" | awk '{print $2, $4}'; }

# The run to kill, in the background; rank 1's process id appears once it stalls inside the checkpoint of step 4.
mkdir -p "$work/stall"
DSV3_TEST_CHECKPOINT_STALL_STEP=4 DSV3_TEST_CHECKPOINT_STALL_DIR="$work/stall" run "$work/killed" \
  >"$work/killed.out" 2>&1 &
job=$!
for _ in $(seq 600); do [ -s "$work/stall/rank1.pid" ] && [ -s "$work/stall/rank0.pid" ] && break; sleep 0.1; done
[ -s "$work/stall/rank1.pid" ] ||
  { kill -9 "$job"; cat "$work/killed.out"; fail "rank 1 never reached the checkpoint of step 4"; }
[ -f "$work/killed/checkpoint/step-4.h5.partial" ] || fail "no partial file while writing step 4"
kill -9 "$(cat "$work/stall/rank1.pid")"
timeout 60 tail --pid="$job" -f /dev/null || { kill -9 "$job"; fail "the job did not end after rank 1 was killed"; }
wait "$job" && fail "the killed job exited with status 0"
# The launcher ends rank 0 too; should it have left it stalled, it is ended here, identified by its environment.
rank0="$(cat "$work/stall/rank0.pid")"
if grep -qz "^DSV3_TEST_CHECKPOINT_STALL_DIR=$work/stall\$" "/proc/$rank0/environ" 2>/dev/null; then
  kill -9 "$rank0"
  fail "rank 0 outlived the job after rank 1 was killed"
fi
ls "$work/killed/checkpoint"
[ -f "$work/killed/checkpoint/step-2.h5" ] || fail "the checkpoint of step 2 is missing"
[ ! -f "$work/killed/checkpoint/step-4.h5" ] || fail "an unfinished checkpoint of step 4 looks complete"

run "$work/killed" >"$work/resumed.out" 2>&1 || { cat "$work/resumed.out"; fail "the resumed run failed"; }
cat "$work/resumed.out"
grep -q "^checkpoint: resumed from $work/killed/checkpoint/step-2.h5 at step 2$" "$work/resumed.out" ||
  fail "the run did not resume from the checkpoint of step 2"
[ ! -e "$work/killed/checkpoint/step-4.h5.partial" ] || fail "the partial file of step 4 was not removed"
[ "$(losses "$work/killed.out" | wc -l)" -eq 4 ] ||
  { cat "$work/killed.out"; fail "the killed run did not log 4 steps"; }
diff <(losses "$work/killed.out" | tail -n 2) <(losses "$work/resumed.out") ||
  fail "the resumed losses of steps 3 and 4 differ from those of the run before it was killed"
[ "$(losses "$work/resumed.out" | wc -l)" -eq 2 ] || fail "the resumed run did not log steps 3 and 4"
[ -f "$work/killed/checkpoint/step-4.h5" ] || fail "the resumed run wrote no checkpoint of step 4"
echo "e2e_checkpoint_fault: passed"
