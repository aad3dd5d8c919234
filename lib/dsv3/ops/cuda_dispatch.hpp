// How the op dispatch hands CUDA tensors to the kernels of ops/cuda: storage types, raw pointers, the stream.
// Private to the op library.
#pragma once

#include "dsv3/ops/common.hpp"
#include "dsv3/ops/cuda/backend.hpp"

namespace dsv3::ops {

// The GPU storage type of a float tensor: f32 or bf16 (there is no f64 path on the GPU).
cuda::Float cuda_float(const char* op, const char* name, const Tensor& tensor);
cuda::Index cuda_index(const char* op, const char* name, const Tensor& tensor);
// A defined tensor's elements, or nullptr for an undefined (skipped) argument.
inline void* device_pointer(const Tensor& tensor) { return tensor.defined() ? tensor.raw() : nullptr; }

}  // namespace dsv3::ops

// DSV3_ON_CUDA(op, call): the kernel call when the CUDA backend is built in, otherwise the error that this build
// has none. Used as `if (x.device() == Device::cuda) return DSV3_ON_CUDA(op, cuda::...(...));`.
#if DSV3_CUDA_BACKEND
#define DSV3_ON_CUDA(op, call) call
#else
#define DSV3_ON_CUDA(op, call) ::dsv3::ops::unsupported_device(op, ::dsv3::Device::cuda)
#endif
