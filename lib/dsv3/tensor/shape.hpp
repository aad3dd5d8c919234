// Shape: up to five extents of a row-major contiguous tensor.
#pragma once

#include <fmt/format.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>

namespace dsv3 {

class Shape {
 public:
  static constexpr int kMaxRank = 5;

  Shape() = default;  // rank 0: a scalar
  Shape(std::initializer_list<std::int64_t> extents);
  explicit Shape(std::span<const std::int64_t> extents);

  int rank() const { return rank_; }
  std::int64_t operator[](int axis) const { return extents_[check_axis(axis)]; }
  std::int64_t& operator[](int axis) { return extents_[check_axis(axis)]; }
  std::int64_t numel() const;
  std::span<const std::int64_t> extents() const { return {extents_.data(), static_cast<std::size_t>(rank_)}; }
  std::string to_string() const;  // "[2, 3, 4]"

  bool operator==(const Shape& other) const;

 private:
  int check_axis(int axis) const;  // negative axes count from the end

  std::array<std::int64_t, kMaxRank> extents_{};
  int rank_ = 0;
};

}  // namespace dsv3

template <>
struct fmt::formatter<dsv3::Shape> : fmt::formatter<std::string> {
  auto format(const dsv3::Shape& shape, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(shape.to_string(), ctx);
  }
};
