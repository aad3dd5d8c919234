// The MPI implementation of Communicator, for CPU tensors: every call is one or more non-blocking MPI
// operations (MPI_Iallreduce, MPI_Ireduce_scatter_block, MPI_Iallgather, MPI_Ibcast, MPI_Isend/MPI_Irecv)
// on a private duplicate of the given communicator, and its Request waits on them.
//
// Reductions take f32, f64, i32 and i64; data movement (all-gather, all-to-all-v, broadcast, send/recv) takes
// every dtype, bf16 and fp8 as 2- and 1-byte words. MPI counts are ints, so an operation of more than
// max_count elements per call is split into several MPI calls (tests lower max_count to exercise that).
#pragma once

#include "dsv3/comm/communicator.hpp"

#include <mpi.h>

#include <climits>
#include <cstdint>
#include <memory>
#include <string>

namespace dsv3::comm {

inline constexpr std::int64_t kMpiMaxCount = INT_MAX;

// Duplicates `comm` (collective over it); the duplicate is freed with the communicator unless MPI is already
// finalised. `name` is the group's name in error messages ("dp_shard", "world").
std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, std::string name,
                                                    std::int64_t max_count = kMpiMaxCount);

}  // namespace dsv3::comm
