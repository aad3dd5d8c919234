// The NCCL implementation of Communicator, for CUDA tensors. This header needs no CUDA headers; the
// implementation (nccl_communicator.cpp) is built only with the CUDA backend, and a CPU-only build gets
// nccl_unavailable.cpp instead, whose factory throws an error saying so.
//
// Each communicator owns an NCCL communicator over the ranks of an MPI communicator (rank 0 makes the
// ncclUniqueId and broadcasts it over MPI) and a communication stream. Every call first makes that stream wait
// for the work already queued on the compute stream, then queues the NCCL operation; its Request is a CUDA
// event recorded after it, and wait() makes the compute stream wait for that event: compute overlaps
// communication until the first kernel that needs the result, and the host never blocks.
//
// NCCL has no tags: send() and recv() between two ranks match in call order, and the tag is only checked.
// They are also not launched at once but queued until the next other call, wait() or test(), then launched
// together as one NCCL group, so a ring where every rank sends before it receives does not deadlock (launched
// one by one on one stream, each send would wait for a receive queued behind it).
//
// Reductions take f32, f64, i32 and i64 (never bf16: DESIGN.md reduces across ranks in fp32); data movement
// takes every dtype. NCCL counts are size_t, so nothing is split.
#pragma once

#include "dsv3/comm/communicator.hpp"

#include <mpi.h>

#include <memory>
#include <string>

namespace dsv3::comm {

// True when this build of dsv3 has the NCCL communicator (the CUDA backend is on).
bool nccl_built();

// Collective over `comm`. The NCCL communicator uses the CUDA device current on the calling thread (one rank
// per GPU: set it before). `compute_stream` is the cudaStream_t whose earlier work every collective waits for
// (nullptr: the legacy default stream). Throws dsv3::Error in a build without CUDA.
std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, std::string name, void* compute_stream = nullptr);

}  // namespace dsv3::comm
