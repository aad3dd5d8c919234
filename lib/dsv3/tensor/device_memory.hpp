// Raw memory on a device: the only place tensors allocate, free and copy bytes.
// CUDA memory goes through the dsv3_cuda_runtime target when the CUDA backend is built;
// without it, asking for a CUDA tensor is an error that says so.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dsv3 {

enum class Device : std::uint8_t { cpu, cuda };
std::string_view device_name(Device device);

// Host allocations are aligned to this many bytes (cache lines, AVX-512 loads, and the alignment of arena tensors).
inline constexpr std::size_t kHostAlignment = 256;

void* device_allocate(Device device, std::size_t bytes);
void device_free(Device device, void* pointer);
void device_copy(void* destination, Device destination_device, const void* source, Device source_device,
                 std::size_t bytes);
void device_zero(void* pointer, Device device, std::size_t bytes);

// True when the CUDA backend is built in.
bool cuda_built();
// True when the CUDA backend is built in and a GPU is visible to this process.
bool cuda_available();
// GPUs visible to this process (0 without the CUDA backend).
int cuda_device_count();
// The current GPU's name ("NVIDIA H200") and memory: in use by every process on it (the CUDA context included),
// and in all.
std::string cuda_device_name();
struct CudaMemory {
  std::size_t used_bytes = 0;
  std::size_t total_bytes = 0;
};
CudaMemory cuda_memory();
// Makes GPU `ordinal` the current device of the calling thread: where CUDA tensors are allocated and kernels run.
void cuda_set_device(int ordinal);

}  // namespace dsv3
