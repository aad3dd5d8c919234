// How many threads each rank computes with on the CPU backend.
#pragma once

#include <mpi.h>

namespace dsv3::train {

// OMP_NUM_THREADS when it is set; otherwise the CPUs this process may run on, shared evenly among the ranks of
// `comm` on the same node, so that two ranks on two cores run two threads rather than four fighting ones.
// Sets OpenMP's and OpenBLAS's thread counts and returns the count.
int configure_cpu_threads(MPI_Comm comm);

}  // namespace dsv3::train
