// Agreement on failure before collective calls: a rank that throws while the others go on into a collective
// HDF5 or MPI call leaves them waiting forever, so rank-local steps that precede collective work run here.
#pragma once

#include <mpi.h>

#include <functional>

namespace dsv3::io {

// Runs `step` on this rank. If it throws on any rank of `comm`, every rank throws dsv3::Error with the message
// of the lowest failing rank (prefixed "rank N: " when comm has more than one rank). Collective over comm.
void agree_on_failure(MPI_Comm comm, const std::function<void()>& step);

}  // namespace dsv3::io
