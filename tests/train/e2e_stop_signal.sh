#!/usr/bin/env bash
# A stop request from the batch system ends a run with a checkpoint and the requeue exit code, and the next start
# continues exactly (train/stop_signal.hpp): dsv3_train on 2 MPI ranks, the debug model, 12 steps with no scheduled
# checkpoint before the last. SIGUSR1 goes to the launcher once step 2 is logged (mpiexec forwards it to the ranks,
# as `scancel --signal=USR1` or sbatch's --signal do under Slurm); the run must stop after some step N < 12 with
# exit status 75 and step-N.h5, and the same command must resume from it and log for steps N+1..12 the losses of
# an uninterrupted run.
#   e2e_stop_signal.sh SOURCE_DIR DSV3_TRAIN MAKE_TEST_DATASET MPIEXEC [MPIEXEC FLAGS...]
set -uo pipefail
source_dir="$1" trainer="$2" make_dataset="$3"
shift 3
mpiexec=("$@" -n 2)

work="$(mktemp -d "${TMPDIR:-/tmp}/dsv3-e2e-stop.XXXXXX")"
trap 'rm -rf "$work"' EXIT
fail() { echo "e2e_stop_signal: FAILED: $*" >&2; exit 1; }

"$make_dataset" "$work/data.h5" 200 || fail "make_test_dataset"
# 12 steps; the only scheduled checkpoint is the last one. run DUMP_FOLDER.
train_args=(--training.device=cpu --job.config_file "$source_dir/inputs/debug_model.toml" --training.dataset_path="$work/data.h5"
  --model.hf_assets_path "" --metrics.peak_tflops=1 --metrics.log_freq=1 --validation.enable=false
  --training.steps=12 --lr_scheduler.warmup_steps=1 --training.seq_len=32 --training.local_batch_size=2
  --checkpoint.enable --checkpoint.interval=100)
run() { "${mpiexec[@]}" "$trainer" "${train_args[@]}" --job.dump_folder="$1"; }
losses() { grep -o '^step  *[0-9]*/12  loss  *[0-9.]*' "$1" | awk '{print $2, $4}'; }

run "$work/straight" >"$work/straight.out" 2>&1 || { cat "$work/straight.out"; fail "the uninterrupted run failed"; }

# Started directly, not through run(): $! must be the launcher's process, which forwards the signal to the ranks.
"${mpiexec[@]}" "$trainer" "${train_args[@]}" --job.dump_folder="$work/stopped" >"$work/stopped.out" 2>&1 &
job=$!
for _ in $(seq 600); do grep -q '^step  *2/12' "$work/stopped.out" && break; sleep 0.1; done
grep -q '^step  *2/12' "$work/stopped.out" || { kill -9 "$job"; cat "$work/stopped.out"; fail "step 2 never logged"; }
kill -USR1 "$job"
timeout 120 tail --pid="$job" -f /dev/null || { kill -9 "$job"; fail "the job did not end after SIGUSR1"; }
wait "$job"
status=$?
cat "$work/stopped.out"
[ "$status" -eq 75 ] || fail "exit status $status after SIGUSR1, expected 75 (requeue)"
stop_step="$(sed -n 's/^stopping after step \([0-9]*\) of 12 on signal .*/\1/p' "$work/stopped.out")"
[ -n "$stop_step" ] && [ "$stop_step" -lt 12 ] || fail "no 'stopping after step N of 12' line"
[ -f "$work/stopped/checkpoint/step-$stop_step.h5" ] || fail "no checkpoint of step $stop_step"

run "$work/stopped" >"$work/resumed.out" 2>&1 || { cat "$work/resumed.out"; fail "the resumed run failed"; }
grep -q "^checkpoint: resumed from $work/stopped/checkpoint/step-$stop_step.h5 at step $stop_step$" \
  "$work/resumed.out" || { cat "$work/resumed.out"; fail "the run did not resume from step $stop_step"; }
diff <(losses "$work/straight.out" | awk -v n="$stop_step" '$1 + 0 > n') <(losses "$work/resumed.out") ||
  fail "the resumed losses differ from those of the uninterrupted run"
echo "e2e_stop_signal: passed (stopped after step $stop_step)"
