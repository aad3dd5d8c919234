# Sourced by every jobscript in this folder: finds the programs, checks the job's environment before anything is
# launched, sets the OpenMP/BLAS/NCCL environment and wraps srun with the MPI plugin, the binding and the requeue
# that a stop request asks for. A jobscript finds this file through DSV3_ROOT or the folder sbatch was called from
# (sbatch runs a copy of the script from its spool folder, so the script's own path says nothing).

# shellcheck source=tools/bootstrap.sh
source "$DSV3_ROOT/tools/bootstrap.sh"  # dsv3_cpu_environment

dsv3_fail() {
  echo "dsv3 jobscript: $*" >&2
  exit 1
}

# dsv3_find_program NAME: prints the path of a dsv3 program: $DSV3_BIN_DIR/NAME (an install prefix's bin), else a
# build tree's apps/NAME/NAME ($DSV3_BUILD_DIR, default the source tree's build/release), else PATH (a Spack install
# after `spack load dsv3`).
dsv3_find_program() {
  local name="$1" build="${DSV3_BUILD_DIR:-$DSV3_ROOT/build/release}" candidate
  for candidate in ${DSV3_BIN_DIR:+"$DSV3_BIN_DIR/$name"} "$build/apps/$name/$name" "$(command -v "$name")"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] && { echo "$candidate"; return 0; }
  done
  dsv3_fail "$name not found in \$DSV3_BIN_DIR (${DSV3_BIN_DIR:-unset}), $build/apps/$name or PATH; build it" \
    "(./run_train.sh, or cmake --build with DSV3_BUILD_DIR), \`spack load dsv3\`, or set DSV3_BIN_DIR"
}

dsv3_check_readable() {
  [ -r "$1" ] || dsv3_fail "$2 $1 is not readable (relative paths are from $PWD)"
}

# dsv3_check_gpus COUNT: each node must show COUNT GPUs, what Slurm gave the job (nvidia-smi on every node, one task
# each), so that a node with a lost GPU fails here and not in NCCL's init twenty minutes later.
dsv3_check_gpus() {
  local expected="$1"
  command -v nvidia-smi >/dev/null || dsv3_fail "nvidia-smi not found on $(hostname): no NVIDIA driver on this node"
  local counts
  counts="$(srun --ntasks-per-node=1 --ntasks="$SLURM_JOB_NUM_NODES" bash -c \
    'echo "$(hostname) $(nvidia-smi -L 2>/dev/null | grep -c "^GPU")"')" || dsv3_fail "nvidia-smi failed: $counts"
  echo "$counts" | awk -v n="$expected" -v asked="GPU(s), the job asked for $expected" \
    '$2 != n { bad = 1; print "dsv3 jobscript: " $1 " shows " $2 " " asked } END { exit bad }' >&2 || exit 1
}

# OpenMP: one thread per CPU Slurm gave the task, pinned to its cores. OpenBLAS single-threaded: the CPU backend
# runs OpenMP over single-threaded BLAS calls (lib/dsv3/ops/cpu/blas.hpp). NCCL: warnings only; sites set
# NCCL_SOCKET_IFNAME / NCCL_IB_HCA in their module files.
dsv3_job_environment() {
  export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}" OMP_PLACES=cores OMP_PROC_BIND=close OPENBLAS_NUM_THREADS=1
  export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
  dsv3_cpu_environment
}

# The run folder of this job: the same for every requeued run of it, so a restart finds its checkpoints.
dsv3_run_folder() {
  local folder="${DSV3_RUNS:-${SLURM_SUBMIT_DIR:-$PWD}/runs}/${SLURM_JOB_NAME:-dsv3}-${SLURM_JOB_ID:-$$}"
  mkdir -p "$folder" || dsv3_fail "cannot create the run folder $folder"
  echo "$folder"
}

# dsv3_srun [SRUN OPTIONS...] PROGRAM ARGS...: srun with the MPI plugin (PMIx: Debian's Open MPI 4.1 is built
# against PMIx and has no PMI-1/PMI-2 client, so --mpi=pmi2 or none fail at MPI_Init; DSV3_SRUN_MPI overrides), each
# task bound to its cores (DSV3_CPU_BIND overrides; empty: no --cpu-bind, for a cluster whose TaskPlugin cannot
# bind) and the job ended when a task fails. Exit status 75 (dsv3_train's "stopped on a signal, checkpoint
# written": train/stop_signal.hpp) requeues the job, which then resumes from that checkpoint: sbatch's
# --signal=USR1@300 asks for the signal 5 minutes before the time limit.
dsv3_srun() {
  local status=0 cpu_bind="${DSV3_CPU_BIND-cores}"
  srun --mpi="${DSV3_SRUN_MPI:-pmix}" ${cpu_bind:+--cpu-bind="$cpu_bind"} --kill-on-bad-exit=1 "$@" || status=$?
  if [ "$status" -eq 75 ]; then
    echo "dsv3 jobscript: stopped with a checkpoint (status 75); requeueing job $SLURM_JOB_ID" \
      "(restart $((${SLURM_RESTART_COUNT:-0} + 1)))"
    scontrol requeue "$SLURM_JOB_ID" || dsv3_fail "scontrol requeue $SLURM_JOB_ID failed; resubmit to resume"
  fi
  return "$status"
}

# dsv3_train_job CONFIG [DSV3_TRAIN ARGS...]: what every training jobscript does. Checks the program, the config
# ($CONFIG_FILE overrides CONFIG; relative to the submit folder) and, in a job with GPUs, each node's GPU count;
# then runs dsv3_train on every task with the job's run folder as job.dump_folder. GPU jobs get one GPU per task,
# the one closest to the task's cores.
dsv3_train_job() {
  local config="${CONFIG_FILE:-$1}" trainer run_folder gpu_binding=()
  local gpus_per_node="${SLURM_GPUS_ON_NODE:-${SLURM_GPUS_PER_NODE:-0}}"  # SLURM_GPUS_PER_NODE may be "h100:8"
  shift
  trainer="$(dsv3_find_program dsv3_train)" || exit 1
  dsv3_check_readable "$config" "config"
  config="$(realpath "$config")"
  if [ "${gpus_per_node##*:}" -gt 0 ]; then
    dsv3_check_gpus "${gpus_per_node##*:}"
    gpu_binding=(--gpus-per-task=1 --gpu-bind=single:1)
  fi
  run_folder="$(dsv3_run_folder)" || exit 1
  dsv3_job_environment
  echo "dsv3 jobscript: $SLURM_NTASKS tasks on $SLURM_JOB_NUM_NODES node(s), run folder $run_folder," \
    "restart ${SLURM_RESTART_COUNT:-0}"
  # The configs name their data and tokenizer relative to the source tree, as torchtitan's do.
  cd "$DSV3_ROOT" || exit 1
  dsv3_srun "${gpu_binding[@]}" "$trainer" --job.config_file "$config" --job.dump_folder="$run_folder" "$@"
}
