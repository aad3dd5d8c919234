// Device-side checks of index arguments (token ids, positions, targets) that the CPU reference validates before
// writing any output. The values live on the GPU, so the check runs there and its verdict is read back: each call
// waits for the stream.
#pragma once

#include "dsv3/ops/cuda/backend.hpp"

namespace dsv3::cuda {

struct OutOfRange {
  std::int64_t index = -1;  // the first element outside the range; -1 when there is none
  std::int64_t value = 0;   // its value
};

// The first of values[0, n) outside [low, high) and not equal to `also_valid` (the ignore_index of targets; pass
// `low` when no other value is valid).
OutOfRange find_out_of_range(const void* values, Index type, std::int64_t n, std::int64_t low, std::int64_t high,
                             std::int64_t also_valid, void* stream, const char* op);

}  // namespace dsv3::cuda
