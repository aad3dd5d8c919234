#include "dsv3/ops/elementwise.hpp"

#include "backend_ops.hpp"

#include <doctest/doctest.h>

#include <cmath>

using namespace dsv3;
using namespace dsv3::testing;
using namespace dsv3::testing::backend;

namespace {

// Odd sizes on purpose: kernels must handle tails; 0 must be a no-op.
const Shape kShapes[] = {Shape{0}, Shape{1}, Shape{7, 13}, Shape{3, 1000, 3}};

}  // namespace

TEST_CASE("backend elementwise: add, axpy, scale, fill") {
  Rng rng(1);
  for (const DType dtype : kDeviceFloatTypes) {
    for (const Shape& shape : kShapes) {
      const Tensor a = random_representable(shape, dtype, rng);
      const Tensor b = random_representable(shape, dtype, rng);
      const DeviceTensor da = DeviceTensor::upload(a, dtype), db = DeviceTensor::upload(b, dtype);
      const std::string where = std::string(dtype_name(dtype)) + " " + shape.to_string();

      const DeviceTensor sum = DeviceTensor::poisoned(shape, dtype);
      ops::add(sum, da, db);
      const Tensor expected_sum = Tensor::empty(shape, DType::f32);
      ops::add(expected_sum, a, b);
      check_output("add " + where, sum, expected_sum, nmse_threshold(dtype));

      const DeviceTensor y = DeviceTensor::upload(a, dtype);
      ops::axpy(y, -0.75, db);
      const Tensor expected_axpy = a.clone();
      ops::axpy(expected_axpy, -0.75, b);
      check_output("axpy " + where, y, expected_axpy, nmse_threshold(dtype));

      ops::scale(y, 3.0);
      ops::scale(expected_axpy, 3.0);
      check_output("scale " + where, y, expected_axpy, nmse_threshold(dtype));

      const DeviceTensor filled = DeviceTensor::poisoned(shape, dtype);
      ops::fill(filled, 0.3125);
      const Tensor expected_fill = Tensor::empty(shape, DType::f32);
      ops::fill(expected_fill, 0.3125);
      check_output("fill " + where, filled, expected_fill, 0.0);

      // A value just above a bf16 tie rounds up when rounded once from double (twice, via f32, it would tie to 1).
      const double above_tie = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40);
      ops::fill(filled, above_tie);
      const Tensor exact = Tensor::empty(shape, DType::f64), rounded = Tensor::empty(shape, dtype);
      ops::fill(exact, above_tie);
      ops::convert(rounded, exact);
      ops::convert(expected_fill, rounded);
      check_output("fill above a tie " + where, filled, expected_fill, 0.0);
    }
  }
}

TEST_CASE("backend elementwise: convert between f32, bf16 and fp8, and between index dtypes") {
  Rng rng(2);
  for (const Shape& shape : kShapes) {
    // Spread over fp8's range and past it (saturation), with exact ties for round-to-nearest-even.
    const Tensor x = random_uniform(shape, DType::f32, rng, -600.0, 600.0);
    for (const DType to : {DType::bf16, DType::fp8_e4m3}) {
      const DeviceTensor source = DeviceTensor::upload(x, DType::f32);
      const DeviceTensor narrowed = DeviceTensor::poisoned(shape, to);
      ops::convert(narrowed, source);
      const Tensor expected = Tensor::empty(shape, to);
      ops::convert(expected, x);
      // Bit-exact: both round once to nearest even and saturate the same way.
      const Tensor expected_f32 = Tensor::empty(shape, DType::f32);
      ops::convert(expected_f32, expected);
      check_output(fmt::format("convert f32 → {} {}", dtype_name(to), shape.to_string()), narrowed, expected_f32, 0.0);

      const DeviceTensor widened = DeviceTensor::poisoned(shape, DType::f32);
      ops::convert(widened, narrowed);
      check_output(fmt::format("convert {} → f32 {}", dtype_name(to), shape.to_string()), widened, expected_f32, 0.0);
    }
    const Tensor rounded = Tensor::empty(shape, DType::f32);
    ops::round_to_bf16(rounded, x);
    const DeviceTensor device_rounded = DeviceTensor::poisoned(shape, DType::f32);
    ops::round_to_bf16(device_rounded, DeviceTensor::upload(x, DType::f32));
    check_output("round_to_bf16 " + shape.to_string(), device_rounded, rounded, 0.0);

    const Tensor ids = random_uniform(shape, DType::i64, rng, -1e9, 1e9);
    const DeviceTensor narrow_ids = DeviceTensor::poisoned(shape, DType::i32);
    ops::convert(narrow_ids, DeviceTensor::upload(ids));
    const Tensor expected_ids = Tensor::empty(shape, DType::i32);
    ops::convert(expected_ids, ids);
    check_equal("convert i64 → i32 " + shape.to_string(), narrow_ids, expected_ids);
  }
  // Out of i32's range: an error, and the destination keeps its contents.
  const Tensor too_big = from_values(Shape{3}, DType::i64, {1, 3e9, 2});
  const DeviceTensor narrow = DeviceTensor::poisoned(Shape{3}, DType::i32);
  CHECK_THROWS_WITH(ops::convert(narrow, DeviceTensor::upload(too_big)),
                    doctest::Contains("element 1 of the i64 source does not fit in i32"));
  check_equal("convert i64 → i32 refused", narrow, from_values(Shape{3}, DType::i32, {-1, -1, -1}));
}

TEST_CASE("backend copy_head_columns: per head, broadcast of one head, sum over heads") {
  Rng rng(3);
  struct Case {
    std::int64_t tokens, dst_heads, src_heads, dst_row, src_row, dst_column, src_column, width;
  };
  const Case cases[] = {
      {7, 3, 3, 40, 24, 5, 2, 19},    // a slice of every head into the middle of wider rows
      {5, 4, 1, 192, 576, 128, 512, 64},  // k_pe broadcast to every head (MLA's shapes)
      {5, 1, 4, 576, 192, 512, 128, 64},  // its adjoint: the sum over heads
      {1, 1, 1, 1, 1, 0, 0, 1},
      {0, 2, 2, 8, 8, 0, 0, 8},
  };
  for (const DType dtype : kDeviceFloatTypes) {
    for (const Case& c : cases) {
      const Tensor src = random_representable(Shape{c.tokens, c.src_heads, c.src_row}, dtype, rng);
      const Tensor dst0 = random_representable(Shape{c.tokens, c.dst_heads, c.dst_row}, dtype, rng);
      const Tensor expected = dst0.clone();
      ops::copy_head_columns(expected, c.dst_column, src, c.src_column, c.width);
      const DeviceTensor dst = DeviceTensor::upload(dst0, dtype);  // columns outside the range must survive
      ops::copy_head_columns(dst, c.dst_column, DeviceTensor::upload(src, dtype), c.src_column, c.width);
      check_output(fmt::format("copy_head_columns {} {} → {}", dtype_name(dtype), src.shape().to_string(),
                               dst0.shape().to_string()),
                   dst, expected, c.src_heads > c.dst_heads ? nmse_threshold(dtype) : 0.0);
    }
  }
}
