// A Communicator for ranks that run on GPUs: CUDA tensors go through NCCL, host tensors (a grad-norm square, a
// loss sum, expert-load counts) through MPI, over the same group. The two keep their own order; a caller that
// mixes them waits on one before it depends on it in the other, as every caller in dsv3 does.
#pragma once

#include "dsv3/comm/communicator.hpp"

#include <memory>

namespace dsv3::comm {

std::unique_ptr<Communicator> make_device_routed_communicator(std::unique_ptr<Communicator> host,
                                                              std::unique_ptr<Communicator> device);

}  // namespace dsv3::comm
