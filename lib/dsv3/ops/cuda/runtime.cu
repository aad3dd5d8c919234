#include "dsv3/ops/cuda/runtime.hpp"

#include "dsv3/core/error.hpp"

#include <cuda_runtime.h>

#include <cstdint>

namespace dsv3::cuda {

namespace {
void check(cudaError_t status, const char* what, std::size_t bytes) {
  DSV3_CHECK(status == cudaSuccess, "{} ({} bytes): {}", what, bytes, cudaGetErrorString(status));
}

// The current device's default memory pool keeps what is freed (no release threshold): the layers allocate their
// scratch tensors step after step, and handing memory back to the driver at each synchronisation would make every
// step pay for cudaMalloc again.
void keep_freed_memory() {
  constexpr int kMaxDevices = 64;
  static bool configured[kMaxDevices] = {};
  int ordinal = 0;
  check(cudaGetDevice(&ordinal), "cudaGetDevice", 0);
  if (ordinal >= kMaxDevices || configured[ordinal]) return;
  cudaMemPool_t pool = nullptr;
  check(cudaDeviceGetDefaultMemPool(&pool, ordinal), "cudaDeviceGetDefaultMemPool", 0);
  std::uint64_t threshold = UINT64_MAX;
  check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold), "cudaMemPoolSetAttribute", 0);
  configured[ordinal] = true;
}
}  // namespace

// Stream-ordered on the legacy default stream, where the ops run: a free does not wait for the device (cudaFree
// would), and the memory goes back to the pool for the next allocation queued after the kernels that used it.
// Buffers that another stream uses (NCCL's) are held by their operation until it is waited on, which orders the
// default stream after it.
void* allocate(std::size_t bytes) {
  keep_freed_memory();
  void* pointer = nullptr;
  check(cudaMallocAsync(&pointer, bytes, cudaStreamLegacy), "cudaMallocAsync", bytes);
  return pointer;
}

void free(void* pointer) { cudaFreeAsync(pointer, cudaStreamLegacy); }

void copy(void* destination, bool destination_on_device, const void* source, bool source_on_device,
          std::size_t bytes) {
  const cudaMemcpyKind kind = destination_on_device
                                  ? (source_on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                  : (source_on_device ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  check(cudaMemcpy(destination, source, bytes, kind), "cudaMemcpy", bytes);
}

void zero(void* pointer, std::size_t bytes) { check(cudaMemset(pointer, 0, bytes), "cudaMemset", bytes); }

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) return 0;
  return count;
}

void set_device(int ordinal) {
  const cudaError_t status = cudaSetDevice(ordinal);
  DSV3_CHECK(status == cudaSuccess, "cudaSetDevice({}) of {} visible GPUs: {}", ordinal, device_count(),
             cudaGetErrorString(status));
}

std::string device_name() {
  int ordinal = 0;
  cudaDeviceProp properties{};
  check(cudaGetDevice(&ordinal), "cudaGetDevice", 0);
  check(cudaGetDeviceProperties(&properties, ordinal), "cudaGetDeviceProperties", 0);
  return properties.name;
}

std::pair<std::size_t, std::size_t> memory_info() {
  std::size_t free = 0, total = 0;
  check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo", 0);
  return {free, total};
}

}  // namespace dsv3::cuda
