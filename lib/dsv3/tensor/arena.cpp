#include "dsv3/tensor/arena.hpp"

namespace dsv3 {

std::int64_t Arena::padded_numel(std::int64_t numel, DType dtype) {
  const auto alignment = static_cast<std::int64_t>(kAlignmentBytes / dtype_size(dtype));
  return (numel + alignment - 1) / alignment * alignment;
}

Arena::Arena(std::int64_t capacity_elements, DType dtype, Device device)
    : flat_(Tensor::zeros(Shape{capacity_elements}, dtype, device)) {}

Tensor Arena::take(Shape shape) {
  const std::int64_t needed = padded_numel(shape.numel(), flat_.dtype());
  DSV3_CHECK(used_ + needed <= capacity(), "Arena::take: {} does not fit ({} of {} elements used)",
             shape.to_string(), used_, capacity());
  Tensor tensor = flat_.rows(used_, used_ + shape.numel()).view(shape);
  used_ += needed;
  return tensor;
}

}  // namespace dsv3
