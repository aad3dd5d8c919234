// CUDA kernels of ops/activation.hpp. Arguments are checked by the dispatch; all tensors have n elements of `type`.
#pragma once

#include "dsv3/ops/cuda/backend.hpp"

namespace dsv3::cuda {

void swiglu_forward(void* h, const void* gate, const void* up, Float type, std::int64_t n, void* stream);
// dgate, dup overwritten; they may alias the inputs.
void swiglu_backward(void* dgate, void* dup, const void* dh, const void* gate, const void* up, Float type,
                     std::int64_t n, void* stream);

}  // namespace dsv3::cuda
