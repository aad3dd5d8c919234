// A two-rank job in which rank 1 fails, for e2e_faults.sh: in setup (`failing_rank setup`), where the ranks agree on
// the failure and exit with status 1, or while rank 0 waits for it in a collective (`failing_rank work`), where
// rank 1 must abort the whole job. Either way rank 1's message is printed once.
#include "dsv3/core/error.hpp"
#include "dsv3/train/job_errors.hpp"

#include <mpi.h>

#include <string>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const std::string phase = argc > 1 ? argv[1] : "";
  const auto fail_on_rank_1 = [&] {
    if (rank == 1) dsv3::fail("injected failure in {}", phase);
  };
  int status = 0;
  if (phase == "setup") {
    status = dsv3::train::run_setup(MPI_COMM_WORLD, "failing_rank", fail_on_rank_1) ? 0 : 1;
  } else {
    dsv3::train::run_or_abort(MPI_COMM_WORLD, "failing_rank", [&] {
      fail_on_rank_1();
      MPI_Barrier(MPI_COMM_WORLD);  // rank 0 waits here for a rank that never comes
    });
  }
  MPI_Finalize();
  return status;
}
