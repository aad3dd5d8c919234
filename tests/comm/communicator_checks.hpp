// The checks every Communicator implementation is held to, shared by the MPI tests (every group of several
// process grids) and the NCCL test (on a GPU). Values are small integers, exact in every dtype used, so results
// are compared exactly. Tensors are made on the host and copied to `device` for the call. All checks use CHECK,
// never REQUIRE, so a failure on one rank never leaves the others waiting in a collective.
#pragma once

#include "dsv3/comm/communicator.hpp"

namespace dsv3::testing {

// Every operation on every dtype it takes (reductions with each ReduceOp), in place and not, zero sizes,
// two operations in flight waited in reverse order, and a Request destroyed unwaited.
void check_every_operation(comm::Communicator& comm, Device device);

// Wrong calls (sizes, counts, dtypes, roots, peers, overlapping buffers) throw a dsv3::Error naming the group
// and the sizes, on every rank alike and before any communication.
void check_argument_errors(comm::Communicator& comm, Device device);

}  // namespace dsv3::testing
