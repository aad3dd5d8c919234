// What every CUDA kernel file shares: error checks, fp32 ↔ storage conversion, dtype dispatch, grid sizing and
// warp/block reductions.
#pragma once

#include "dsv3/core/error.hpp"
#include "dsv3/ops/cuda/backend.hpp"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace dsv3::cuda {

using bfloat16 = __nv_bfloat16;

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

inline void check_cuda(cudaError_t status, const char* op, const char* call) {
  DSV3_CHECK(status == cudaSuccess, "{}: {} failed: {}", op, call, cudaGetErrorString(status));
}
// After a launch: a bad configuration fails here; a fault inside the kernel surfaces at the next synchronisation.
inline void check_launch(const char* op) { check_cuda(cudaGetLastError(), op, "kernel launch"); }

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bfloat16 x) { return __bfloat162float(x); }
template <class T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ bfloat16 from_float<bfloat16>(float x) { return __float2bfloat16_rn(x); }

template <class T>
struct TypeTag {
  using type = T;
};
// function(TypeTag<float>) or function(TypeTag<bfloat16>): the C++17 stand-in for a templated lambda.
template <class Function>
void with_float(Float dtype, Function&& function) {
  if (dtype == Float::f32) {
    function(TypeTag<float>{});
  } else {
    function(TypeTag<bfloat16>{});
  }
}
template <class Function>
void with_index(Index dtype, Function&& function) {
  if (dtype == Index::i32) {
    function(TypeTag<std::int32_t>{});
  } else {
    function(TypeTag<std::int64_t>{});
  }
}

// Blocks for a grid-stride loop over n elements: enough to fill the GPU, never more than needed.
inline unsigned grid_for(std::int64_t n, int threads) {
  const std::int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<std::int64_t>(blocks, 1, 65535));
}

// Grid-stride loops: for (std::int64_t i = first_index(); i < n; i += index_stride()).
__device__ __forceinline__ std::int64_t first_index() { return blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; }
__device__ __forceinline__ std::int64_t index_stride() { return std::int64_t{gridDim.x} * blockDim.x; }

__device__ __forceinline__ float warp_sum(float value) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}
__device__ __forceinline__ float warp_max(float value) {
  for (int offset = 16; offset > 0; offset /= 2) value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}
__device__ __forceinline__ double warp_sum(double value) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// The sum over the block, returned to every thread. `scratch` holds 32 values in shared memory; blockDim.x is a
// multiple of 32. Ends with a barrier, so the scratch can be reused by the next call.
template <class T>
__device__ T block_sum(T value, T* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  value = warp_sum(value);
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  value = lane < warps ? scratch[lane] : T(0);
  value = warp_sum(value);
  __syncthreads();
  return value;
}
__device__ __forceinline__ float block_max(float value, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  value = warp_max(value);
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  value = lane < warps ? scratch[lane] : -INFINITY;
  value = warp_max(value);
  __syncthreads();
  return value;
}

}  // namespace dsv3::cuda
