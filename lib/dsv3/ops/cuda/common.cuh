// What every CUDA kernel file shares: error checks, fp32 ↔ storage conversion, dtype dispatch, grid sizing and
// warp/block reductions.
#pragma once

#include "dsv3/core/error.hpp"
#include "dsv3/ops/cuda/backend.hpp"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

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

// One element of device memory read back to the host, after the work queued on the stream (which this waits for).
template <class T>
T read_element(const T* device, void* stream, const char* op) {
  T value{};
  check_cuda(cudaMemcpyAsync(&value, device, sizeof value, cudaMemcpyDeviceToHost, as_stream(stream)), op,
             "cudaMemcpyAsync");
  check_cuda(cudaStreamSynchronize(as_stream(stream)), op, "cudaStreamSynchronize");
  return value;
}

// A device buffer of `count` T in stream-ordered memory: allocated on the stream, freed on it when the buffer goes
// out of scope, so the kernels queued before then are done with it. Kernels' scratch space and result slots.
template <class T>
class StreamBuffer {
 public:
  StreamBuffer(std::int64_t count, void* stream, const char* op) : stream_(as_stream(stream)), op_(op) {
    check_cuda(cudaMallocAsync(reinterpret_cast<void**>(&data_), sizeof(T) * static_cast<std::size_t>(count), stream_),
               op, "cudaMallocAsync");
  }
  ~StreamBuffer() { cudaFreeAsync(data_, stream_); }  // a destructor must not throw; a failure shows up later
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;

  T* get() const { return data_; }
  // Element 0 set from the host (queued on the stream; the value is staged before the call returns).
  void set(const T& value) {
    check_cuda(cudaMemcpyAsync(data_, &value, sizeof value, cudaMemcpyHostToDevice, stream_), op_, "cudaMemcpyAsync");
  }
  // Element 0 read back to the host: waits for the work queued on the stream.
  T read() const { return read_element(data_, stream_, op_); }

 private:
  T* data_ = nullptr;
  cudaStream_t stream_;
  const char* op_;
};

// N consecutive T moved as one access: N = kVector<T> (16 bytes: 4 floats, 8 bf16) in vectorised kernels, N = 1 in
// their fallback for pointers or row lengths that do not allow it.
template <class T, int N>
struct alignas(sizeof(T) * N) Pack {
  T values[N];
};
template <class T>
inline constexpr int kVector = 16 / sizeof(T);
// Whether every pointer is 16-byte aligned (a tensor view can start anywhere in its allocation), so that
// Pack<T, kVector<T>> accesses at element offsets that are multiples of kVector<T> are legal.
inline bool aligned16(std::initializer_list<const void*> pointers) {
  return std::all_of(pointers.begin(), pointers.end(),
                     [](const void* pointer) { return reinterpret_cast<std::uintptr_t>(pointer) % 16 == 0; });
}

// function(std::integral_constant<int, N>{}) with N = kVector<T> when `vectorised`, else 1: the kernel's pack width.
template <class T, class Function>
void with_pack_width(bool vectorised, Function&& function) {
  if (vectorised) {
    function(std::integral_constant<int, kVector<T>>{});
  } else {
    function(std::integral_constant<int, 1>{});
  }
}

// Blocks for a grid-stride loop over n elements: enough to fill the GPU, never more than needed.
inline unsigned grid_for(std::int64_t n, int threads) {
  const std::int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<std::int64_t>(blocks, 1, 65535));
}

// Threads for a block that works through `items` (one row's packs, one quantisation block's elements): whole
// warps, one per item up to max_threads (a multiple of 32), so short rows do not leave most threads idle.
inline int threads_for(std::int64_t items, int max_threads) {
  return static_cast<int>(std::clamp<std::int64_t>((items + 31) / 32 * 32, 32, max_threads));
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
