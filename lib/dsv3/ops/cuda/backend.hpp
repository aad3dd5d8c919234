// The CUDA backend's kernels behind a plain C++17 interface: device pointers, extents, the storage type and the
// stream as void*. The op dispatch (C++20, lib/dsv3/ops/<group>.cpp) checks the arguments and calls these; the
// kernels (nvcc, C++17: fmt and <span> do not compile under nvcc's C++20) see no Tensor.
#pragma once

#include <cstdint>

namespace dsv3::cuda {

// Storage of float tensors on the GPU. Arithmetic is always fp32 (accumulations, softmax and norm statistics);
// GEMMs and attention multiply in bf16 on the tensor cores with fp32 accumulation, whatever the storage.
enum class Float : std::uint8_t { f32, bf16 };
enum class Index : std::uint8_t { i32, i64 };

// Blocks the host until the work queued on the stream is done, turning an asynchronous kernel fault into a
// dsv3::Error naming `what`.
void synchronize(void* stream, const char* what);

}  // namespace dsv3::cuda
