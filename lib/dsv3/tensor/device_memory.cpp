#include "dsv3/tensor/device_memory.hpp"

#include "dsv3/core/error.hpp"

#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#ifdef DSV3_HAVE_CUDA
#include "dsv3/ops/cuda/runtime.hpp"
#endif

namespace dsv3 {

std::string_view device_name(Device device) { return device == Device::cpu ? "cpu" : "cuda"; }

#ifndef DSV3_HAVE_CUDA
namespace {
[[noreturn]] void no_cuda(const char* what) {
  fail("{}: this dsv3 was built without the CUDA backend (configure with -DDSV3_WITH_CUDA=ON)", what);
}
}  // namespace
#endif

namespace {

// Activations and backward scratch come and go every step, megabytes at a time. By default glibc serves blocks
// that large with mmap and trims the heap top beyond 2× that threshold, so each step faulted its pages in afresh
// (measured on the debug model: 66k page faults, 260 MB zeroed by the kernel per step, ~5% of its time).
// Serving blocks up to glibc's largest mmap threshold (32 MB) from a heap that is never trimmed reuses the
// same pages step after step.
void keep_freed_host_memory() {
#ifdef __GLIBC__
  static const bool once = [] {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
    return true;
  }();
  (void)once;
#endif
}

}  // namespace

void* device_allocate(Device device, std::size_t bytes) {
  if (bytes == 0) bytes = 1;  // a valid, unique pointer even for empty tensors
  if (device == Device::cpu) {
    keep_freed_host_memory();
    const std::size_t rounded = (bytes + kHostAlignment - 1) / kHostAlignment * kHostAlignment;
    void* pointer = std::aligned_alloc(kHostAlignment, rounded);
    if (pointer == nullptr) fail("device_allocate: out of host memory allocating {} bytes", bytes);
    return pointer;
  }
#ifdef DSV3_HAVE_CUDA
  return cuda::allocate(bytes);
#else
  no_cuda("device_allocate");
#endif
}

void device_free(Device device, void* pointer) {
  if (device == Device::cpu) {
    std::free(pointer);
    return;
  }
#ifdef DSV3_HAVE_CUDA
  cuda::free(pointer);
#endif
}

void device_copy(void* destination, Device destination_device, const void* source, Device source_device,
                 std::size_t bytes) {
  if (bytes == 0) return;
  if (destination_device == Device::cpu && source_device == Device::cpu) {
    std::memcpy(destination, source, bytes);
    return;
  }
#ifdef DSV3_HAVE_CUDA
  cuda::copy(destination, destination_device == Device::cuda, source, source_device == Device::cuda, bytes);
#else
  no_cuda("device_copy");
#endif
}

void device_zero(void* pointer, Device device, std::size_t bytes) {
  if (device == Device::cpu) {
    std::memset(pointer, 0, bytes);
    return;
  }
#ifdef DSV3_HAVE_CUDA
  cuda::zero(pointer, bytes);
#else
  no_cuda("device_zero");
#endif
}

bool cuda_built() {
#ifdef DSV3_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#ifdef DSV3_HAVE_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

bool cuda_available() { return cuda_device_count() > 0; }

std::string cuda_device_name() {
#ifdef DSV3_HAVE_CUDA
  return cuda::device_name();
#else
  no_cuda("cuda_device_name");
#endif
}

CudaMemory cuda_memory() {
#ifdef DSV3_HAVE_CUDA
  const auto [free, total] = cuda::memory_info();
  return {total - free, total};
#else
  no_cuda("cuda_memory");
#endif
}

void cuda_set_device(int ordinal) {
#ifdef DSV3_HAVE_CUDA
  cuda::set_device(ordinal);
#else
  no_cuda("cuda_set_device");
#endif
}

}  // namespace dsv3
