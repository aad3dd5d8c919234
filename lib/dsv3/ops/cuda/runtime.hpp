// CUDA memory management behind a plain C++ interface, so the tensor layer needs no CUDA headers.
#pragma once

#include <cstddef>
#include <string>
#include <utility>

namespace dsv3::cuda {

void* allocate(std::size_t bytes);
void free(void* pointer);
void copy(void* destination, bool destination_on_device, const void* source, bool source_on_device,
          std::size_t bytes);
void zero(void* pointer, std::size_t bytes);
// GPUs visible to this process (0 when there is no driver or no device).
int device_count();
void set_device(int ordinal);
// The current device's name, and its free and total memory in bytes.
std::string device_name();
std::pair<std::size_t, std::size_t> memory_info();

}  // namespace dsv3::cuda
