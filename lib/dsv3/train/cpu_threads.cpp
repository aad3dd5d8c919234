#include "dsv3/train/cpu_threads.hpp"

#include <cblas.h>
#include <sched.h>

#include <algorithm>
#include <cstdlib>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace dsv3::train {

int configure_cpu_threads(MPI_Comm comm) {
  // OpenMP and OpenBLAS both read OMP_NUM_THREADS themselves.
  if (const char* requested = std::getenv("OMP_NUM_THREADS")) return std::max(1, std::atoi(requested));
  MPI_Comm node;
  MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int ranks_on_node = 1;
  MPI_Comm_size(node, &ranks_on_node);
  MPI_Comm_free(&node);
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  const int cpus = sched_getaffinity(0, sizeof(allowed), &allowed) == 0 ? CPU_COUNT(&allowed) : 1;
  const int threads = std::max(1, cpus / ranks_on_node);
#ifdef _OPENMP
  omp_set_num_threads(threads);
#endif
  openblas_set_num_threads(threads);
  return threads;
}

}  // namespace dsv3::train
