#!/usr/bin/env bash
# The jobscripts on a real Slurm: installs Debian's slurm-wlm and munge when missing, starts munged, slurmctld and
# slurmd for this one machine (state, sockets and logs in a scratch folder, free ports, no cgroups), then
#  1. sbatch jobscripts/dsv3_debug.slurm (CPU backend, 2 tasks, a few steps): the job completes and the loss falls;
#  2. srun -n 2 dsv3_convert_hf import of a fixture, and the same through sbatch jobscripts/dsv3_convert_hf.slurm;
#  3. the 16b, 236b and 671b jobscripts, shrunk to 2 CPU tasks, reach dsv3_train, which refuses the CUDA model;
#  4. a longer job gets `scancel --signal=USR1` (what --signal=USR1@300 sends before the time limit): dsv3_train
#     writes a checkpoint and exits 75, the jobscript requeues the job, and its second run resumes from that
#     checkpoint and completes.
# Every daemon it started is stopped on exit. Needs root (apt-get, daemons as SlurmUser=root); exits 77 (skipped)
# when it is not root. The jobscripts' preflight (no dsv3_train, no config) is checked first, without Slurm.
#   test_slurm.sh SOURCE_DIR BUILD_DIR MAKE_TEST_DATASET
set -uo pipefail
source_dir="$1" build_dir="$2" make_dataset="$3"
fail() { echo "test_slurm: FAILED: $*" >&2; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  [ "$(id -u)" -eq 0 ] || { echo "test_slurm: skipped: not root and slurm-wlm/munge are not installed"; exit 77; }
  DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null ||
    fail "apt-get install slurm-wlm munge"
fi
[ "$(id -u)" -eq 0 ] || { echo "test_slurm: skipped: the daemons run as root here"; exit 77; }

work="$(mktemp -d "${TMPDIR:-/tmp}/dsv3-slurm.XXXXXX")"
chmod 755 "$work"
daemons=()
cleanup() {
  if [ -n "${SLURM_CONF:-}" ] && scancel --quiet --user=root 2>/dev/null; then
    for _ in $(seq 20); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  local pid
  for pid in "${daemons[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${daemons[@]}"; do timeout 10 tail --pid="$pid" -f /dev/null || kill -9 "$pid" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
show_logs() { tail -n 40 "$work"/*.log 2>/dev/null >&2; }

# A port nothing listens on, from a range Slurm's defaults do not use.
free_port() {
  local port
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % 20000))
    (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
  fail "no free port"
}

# munged on its own socket and key, so that it neither needs nor disturbs a munged of the machine.
dd if=/dev/urandom of="$work/munge.key" bs=1024 count=1 status=none && chmod 400 "$work/munge.key"
munged --foreground --force --key-file="$work/munge.key" --socket="$work/munge.sock" --pid-file="$work/munged.pid" \
  --log-file="$work/munged.log" --seed-file="$work/munge.seed" >>"$work/munged.log" 2>&1 &
daemons+=($!)

node="$(hostname -s)"
cpus="$(nproc)"
[ "$cpus" -ge 2 ] || cpus=2  # config_overrides: slurmd announces what the config says
mkdir -p "$work/state" "$work/spool"
cat >"$work/slurm.conf" <<CONF
ClusterName=dsv3test
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SrunPortRange=$(free_port)-$(($(free_port) + 100))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge.sock,cred_expire=10
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
PlugStackConfig=$work/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SwitchType=switch/none
MpiDefault=none
JobRequeue=1
ReturnToService=2
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
SchedulerParameters=sched_interval=1
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
: >"$work/plugstack.conf"
export SLURM_CONF="$work/slurm.conf"
for _ in $(seq 50); do [ -S "$work/munge.sock" ] && break; sleep 0.1; done
slurmctld -D -i -f "$SLURM_CONF" >>"$work/slurmctld.log" 2>&1 &
daemons+=($!)
slurmd -D -N "$node" -f "$SLURM_CONF" >>"$work/slurmd.log" 2>&1 &
daemons+=($!)
for _ in $(seq 60); do sinfo -h -o %T 2>/dev/null | grep -q idle && break; sleep 1; done
sinfo -h -o %T | grep -q idle || { show_logs; fail "the node did not come up idle: $(sinfo 2>&1)"; }
echo "test_slurm: slurmctld and slurmd up on $node ($cpus CPUs)"

job_field() { scontrol show job "$1" -o | grep -o "$2=[^ ]*" | cut -d= -f2; }
# wait_job ID SECONDS: until the job has ended (it stays in slurmctld's memory for MinJobAge, 300 s).
wait_job() {
  local state
  for _ in $(seq "$(($2 * 2))"); do
    state="$(job_field "$1" JobState)"
    case "$state" in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | PREEMPTED) break ;; esac
    sleep 0.5
  done
  echo "$state"
}

# The jobscripts find the source tree, this build and a run folder through the environment sbatch passes on.
# TaskPlugin=task/none binds nothing, so the jobscripts ask for no binding.
export DSV3_ROOT="$source_dir" DSV3_BUILD_DIR="$build_dir" DSV3_RUNS="$work/runs" DSV3_CPU_BIND=
"$make_dataset" "$work/data.h5" 200 >/dev/null || fail "make_test_dataset"
small=(--training.dataset_path="$work/data.h5" --model.hf_assets_path "" --metrics.peak_tflops=1 --metrics.log_freq=1
  --validation.enable=false --lr_scheduler.warmup_steps=1 --training.seq_len=32 --training.local_batch_size=2
  --checkpoint.enable)
cd "$source_dir" || fail "cd $source_dir"
losses() { sed -n 's/^step  *[0-9]*\/[0-9]*  loss  *\([0-9.]*\).*/\1/p' "$1"; }

# 0. The preflight names what is missing before anything is launched.
message="$(DSV3_BUILD_DIR="$work/none" bash jobscripts/dsv3_debug.slurm 2>&1)" &&
  fail "the debug jobscript ran without a dsv3_train"
grep -q "dsv3_train not found" <<<"$message" || fail "no 'dsv3_train not found' from the preflight: $message"
message="$(CONFIG_FILE="$work/none.toml" bash jobscripts/dsv3_debug.slurm 2>&1)" &&
  fail "the debug jobscript ran with a missing config"
grep -q "config $work/none.toml is not readable" <<<"$message" || fail "no 'config … is not readable': $message"

# The GPU count check, with srun and nvidia-smi stood in for: a node showing fewer GPUs than allocated is named.
mkdir -p "$work/fake_bin" && printf '#!/bin/sh\necho "GPU 0: H100"\n' >"$work/fake_bin/nvidia-smi" &&
  chmod +x "$work/fake_bin/nvidia-smi"
message="$(PATH="$work/fake_bin:$PATH" bash -c 'source jobscripts/dsv3_job_env.sh
  srun() { printf "node1 8\nnode2 7\n"; }
  dsv3_check_gpus 8' 2>&1)" && fail "the GPU check passed a node with 7 of 8 GPUs"
grep -q "node2 shows 7 GPU(s), the job asked for 8" <<<"$message" || fail "GPU check: $message"
message="$(PATH="$work/fake_bin:$PATH" bash -c 'source jobscripts/dsv3_job_env.sh
  srun() { printf "node1 8\nnode2 8\n"; }
  dsv3_check_gpus 8' 2>&1)" || fail "the GPU check failed nodes with 8 of 8 GPUs: $message"

# 1. A short run completes with falling loss and its checkpoints in the job's run folder.
job="$(sbatch --parsable --output="$work/%x-%j.out" jobscripts/dsv3_debug.slurm "${small[@]}" \
  --training.steps=8 --checkpoint.interval=4)" || fail "sbatch jobscripts/dsv3_debug.slurm"
state="$(wait_job "$job" 120)"
out="$work/dsv3_debug-$job.out"
cat "$out"
[ "$state" = COMPLETED ] || { show_logs; fail "job $job ended $state, expected COMPLETED"; }
[ "$(losses "$out" | wc -l)" -eq 8 ] || fail "job $job logged $(losses "$out" | wc -l) steps, expected 8"
first="$(losses "$out" | head -1)" last="$(losses "$out" | tail -1)"
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.1) }' || fail "loss did not fall: $first -> $last"
[ -f "$work/runs/dsv3_debug-$job/checkpoint/step-8.h5" ] || fail "no checkpoint in the run folder of job $job"
echo "test_slurm: job $job completed, loss $first -> $last"

# 2. dsv3_convert_hf on 2 tasks, by srun and through its jobscript.
convert="$build_dir/apps/dsv3_convert_hf/dsv3_convert_hf"
fixture="$source_dir/tests/convert/fixtures/qlora0_f32"
if [ -x "$convert" ]; then
  srun -n 2 --mpi=pmix "$convert" import --hf-dir "$fixture" --output "$work/srun_import.h5" ||
    { show_logs; fail "srun -n 2 dsv3_convert_hf import"; }
  [ -f "$work/srun_import.h5" ] || fail "srun -n 2 dsv3_convert_hf wrote no $work/srun_import.h5"
  job="$(sbatch --parsable --output="$work/%x-%j.out" --ntasks-per-node=2 --cpus-per-task=1 \
    jobscripts/dsv3_convert_hf.slurm import --hf-dir "$fixture" --output "$work/sbatch_import.h5")" ||
    fail "sbatch jobscripts/dsv3_convert_hf.slurm"
  state="$(wait_job "$job" 60)"
  cat "$work/dsv3_convert_hf-$job.out"
  [ "$state" = COMPLETED ] && [ -f "$work/sbatch_import.h5" ] || fail "convert job $job ended $state"
  echo "test_slurm: dsv3_convert_hf import ran under srun -n 2 and sbatch"
else
  echo "test_slurm: note: $convert not built; dsv3_convert_hf not tested"
fi

# 3. The GPU jobscripts reach dsv3_train, which refuses to train on CUDA without a GPU, by name: on 2 CPU tasks with
# pp 2 and ep 1 so that the layout itself fits.
for size in 16b 236b 671b; do
  job="$(DSV3_PP=2 DSV3_EP=1 sbatch --parsable --output="$work/%x-%j.out" --nodes=1 --ntasks-per-node=2 \
    --cpus-per-task=1 --gpus-per-node=0 "jobscripts/dsv3_$size.slurm" --training.dataset_path="$work/data.h5" \
    --model.hf_assets_path "")" || fail "sbatch jobscripts/dsv3_$size.slurm"
  state="$(wait_job "$job" 60)"
  [ "$state" = FAILED ] || { cat "$work/dsv3_$size-$job.out"; fail "dsv3_$size job $job ended $state, not FAILED"; }
  grep -q "training.device = 'cuda': \(no GPU is visible\|this build of dsv3 has no CUDA\)" \
    "$work/dsv3_$size-$job.out" || { cat "$work/dsv3_$size-$job.out"; fail "dsv3_$size job $job did not fail on the GPU"; }
done
echo "test_slurm: the 16b, 236b and 671b jobscripts run dsv3_train, which refuses training.device = cuda without a GPU"

# 4. The signal before the time limit: checkpoint, exit 75, requeue, resume, completion.
job="$(sbatch --parsable --output="$work/%x-%j.out" jobscripts/dsv3_debug.slurm "${small[@]}" \
  --training.steps=30 --checkpoint.interval=1000)" || fail "sbatch (the job to stop)"
out="$work/dsv3_debug-$job.out"
for _ in $(seq 600); do grep -q '^step  *2/30' "$out" 2>/dev/null && break; sleep 0.1; done
grep -q '^step  *2/30' "$out" || { cat "$out"; show_logs; fail "job $job never logged step 2"; }
scancel --signal=USR1 "$job" || fail "scancel --signal=USR1 $job"
# slurmctld holds a requeued job back for AuthInfo's cred_expire (default 120 s, here 10 s) before it restarts.
state="$(wait_job "$job" 150)"
cat "$out"
[ "$state" = COMPLETED ] || { show_logs; fail "job $job ended $state after the requeue, expected COMPLETED"; }
[ "$(job_field "$job" Restarts)" = 1 ] || fail "job $job restarted $(job_field "$job" Restarts) times, expected 1"
stop_step="$(sed -n 's/^stopping after step \([0-9]*\) of 30 on signal .*/\1/p' "$out")"
[ -n "$stop_step" ] || fail "no 'stopping after step N of 30' in job $job's output"
grep -q "requeueing job $job" "$out" || fail "the jobscript did not requeue job $job"
grep -q "^checkpoint: resumed from $work/runs/dsv3_debug-$job/checkpoint/step-$stop_step.h5 at step $stop_step$" \
  "$out" || fail "the requeued job did not resume from step $stop_step"
grep -q '^step  *30/30' "$out" || fail "the requeued job did not reach step 30"
echo "test_slurm: passed (job $job stopped after step $stop_step, requeued, resumed and completed)"
