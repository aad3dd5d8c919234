#include "dsv3/train/stop_signal.hpp"

#include <csignal>

namespace dsv3::train {

namespace {

// Written by the handler, read by the training loop: the only state a signal handler may touch portably.
volatile std::sig_atomic_t caught_signal = 0;

extern "C" void record_stop_signal(int signal) { caught_signal = signal; }

}  // namespace

void install_stop_signal_handlers() {
  struct sigaction action = {};
  action.sa_handler = record_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // MPI and file calls in progress continue instead of failing with EINTR
  sigaction(SIGUSR1, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

int caught_stop_signal() { return caught_signal; }

int agreed_stop_signal(MPI_Comm comm) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  // The lowest rank that caught a signal names it: MIN over (rank if caught, else size).
  const int signal = caught_stop_signal();
  int first = signal != 0 ? rank : size;
  MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, comm);
  if (first == size) return 0;
  int agreed = signal;
  MPI_Bcast(&agreed, 1, MPI_INT, first, comm);
  return agreed;
}

}  // namespace dsv3::train
