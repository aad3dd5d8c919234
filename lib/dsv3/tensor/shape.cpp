#include "dsv3/tensor/shape.hpp"

#include "dsv3/core/error.hpp"

#include <fmt/ranges.h>

namespace dsv3 {

Shape::Shape(std::initializer_list<std::int64_t> extents)
    : Shape(std::span<const std::int64_t>(extents.begin(), extents.size())) {}

Shape::Shape(std::span<const std::int64_t> extents) {
  DSV3_CHECK(extents.size() <= static_cast<std::size_t>(kMaxRank), "Shape: rank {} exceeds the maximum {}",
             extents.size(), kMaxRank);
  for (const std::int64_t extent : extents) {
    DSV3_CHECK(extent >= 0, "Shape: negative extent in [{}]", fmt::join(extents, ", "));
    extents_[rank_++] = extent;
  }
}

std::int64_t Shape::numel() const {
  std::int64_t n = 1;
  for (int axis = 0; axis < rank_; ++axis) n *= extents_[axis];
  return n;
}

std::string Shape::to_string() const { return fmt::format("[{}]", fmt::join(extents(), ", ")); }

bool Shape::operator==(const Shape& other) const {
  if (rank_ != other.rank_) return false;
  for (int axis = 0; axis < rank_; ++axis) {
    if (extents_[axis] != other.extents_[axis]) return false;
  }
  return true;
}

int Shape::check_axis(int axis) const {
  const int resolved = axis < 0 ? axis + rank_ : axis;
  DSV3_CHECK(resolved >= 0 && resolved < rank_, "Shape: axis {} out of range for shape {}", axis, to_string());
  return resolved;
}

}  // namespace dsv3
