// Arena: one flat allocation that hands out tensors, so parameters, gradients and optimizer state are
// each a single buffer (one collective per buffer, one AdamW sweep, one global norm).
#pragma once

#include "dsv3/tensor/tensor.hpp"

#include <cstdint>

namespace dsv3 {

class Arena {
 public:
  // Each tensor starts on a multiple of this many bytes, so vector loads and GPU kernels see aligned rows.
  static constexpr std::size_t kAlignmentBytes = 256;

  // Elements a tensor of `numel` elements occupies in an arena, alignment padding included.
  static std::int64_t padded_numel(std::int64_t numel, DType dtype);

  Arena(std::int64_t capacity_elements, DType dtype, Device device = Device::cpu);

  // The next `shape`-sized tensor of the arena; throws when the arena is full.
  Tensor take(Shape shape);
  // The whole buffer as one flat tensor of capacity() elements (padding included, zero-initialised).
  const Tensor& flat() const { return flat_; }

  std::int64_t capacity() const { return flat_.numel(); }
  std::int64_t used() const { return used_; }

 private:
  Tensor flat_;
  std::int64_t used_ = 0;
};

}  // namespace dsv3
