#include "dsv3/ops/cuda/runtime.hpp"

#include "dsv3/core/error.hpp"

#include <cuda_runtime.h>

namespace dsv3::cuda {

namespace {
void check(cudaError_t status, const char* what, std::size_t bytes) {
  DSV3_CHECK(status == cudaSuccess, "{} ({} bytes): {}", what, bytes, cudaGetErrorString(status));
}
}  // namespace

void* allocate(std::size_t bytes) {
  void* pointer = nullptr;
  check(cudaMalloc(&pointer, bytes), "cudaMalloc", bytes);
  return pointer;
}

void free(void* pointer) { cudaFree(pointer); }

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
