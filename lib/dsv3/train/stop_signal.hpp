// Stop requests from the batch system. Slurm sends SIGUSR1 to every task some time before a job's time limit when
// the job asks for it (`#SBATCH --signal=USR1@300`), and SIGTERM when it preempts or cancels a job (SIGKILL follows
// after its KillWait). dsv3_train then finishes the step it is in, writes a checkpoint and exits with
// kRequeueExitCode; the jobscripts turn that code into `scontrol requeue`, and the requeued job resumes from the
// checkpoint (jobscripts/README in the main README, "Clusters").
#pragma once

#include <mpi.h>

namespace dsv3::train {

// EX_TEMPFAIL of sysexits.h, "try again later": the run stopped early on request and left a checkpoint to resume.
inline constexpr int kRequeueExitCode = 75;

// Catches SIGUSR1 and SIGTERM from now on: the handler only records the signal.
void install_stop_signal_handlers();

// The signal this process caught (SIGUSR1 or SIGTERM), 0 when none.
int caught_stop_signal();

// Whether any rank of `comm` caught one: collective, so that every rank stops after the same step. 0 when none,
// else the signal number of the lowest-numbered rank that caught one.
int agreed_stop_signal(MPI_Comm comm);

}  // namespace dsv3::train
