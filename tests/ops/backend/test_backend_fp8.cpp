#include "dsv3/ops/fp8.hpp"

#include "backend_ops.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <random>

using namespace dsv3;
using namespace dsv3::testing;
using namespace dsv3::testing::backend;

namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// Blocks of rows × cols elements: {b, b} for the weight format, {1, t} for activation tiles.
struct Blocking {
  std::int64_t rows, cols;
  Shape grid(const Shape& x) const { return Shape{ceil_div(x[0], rows), ceil_div(x[1], cols)}; }
};

void quantize(const Tensor& q, const Tensor& scale_inv, const Tensor& x, Blocking blocking) {
  if (blocking.rows == 1) {
    ops::fp8_quantize_tiles(q, scale_inv, x, blocking.cols);
  } else {
    ops::fp8_quantize_blocks(q, scale_inv, x, blocking.rows);
  }
}

void dequantize(const Tensor& x, const Tensor& q, const Tensor& scale_inv, Blocking blocking) {
  if (blocking.rows == 1) {
    ops::fp8_dequantize_tiles(x, q, scale_inv, blocking.cols);
  } else {
    ops::fp8_dequantize_blocks(x, q, scale_inv, blocking.rows);
  }
}

// Normal values times 2^k, k uniform in [-24, 4]: every block mixes magnitudes down to fp8's subnormals. The first
// rows are zero, so that the smaller blockings get all-zero blocks (scale 1).
Tensor wide_range(Shape shape, Rng& rng) {
  Tensor x = random_normal(shape, DType::f32, rng);
  std::uniform_int_distribution<int> exponent(-24, 4);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = std::ldexp(x.data<float>()[i], exponent(rng));
  for (std::int64_t i = 0; i < std::min<std::int64_t>(x.numel(), 2 * shape[1]); ++i) x.data<float>()[i] = 0.0f;
  return x;
}

// REQUIREs the device codes to be the host's byte for byte (a decoded comparison would take −0 for +0).
void check_codes(const std::string& what, const DeviceTensor& actual, const Tensor& expected) {
  const Tensor host = actual.tensor().to(Device::cpu);
  std::int64_t first_difference = -1;
  for (std::int64_t i = 0; i < expected.numel() && first_difference < 0; ++i) {
    if (host.data<fp8_e4m3>()[i].bits != expected.data<fp8_e4m3>()[i].bits) first_difference = i;
  }
  INFO(what, ": first differing code at element ", first_difference);
  CHECK(first_difference == -1);
  actual.check_guard(what);
}

}  // namespace

TEST_CASE("backend fp8: quantize and dequantize blocks and tiles, bit-identical to the CPU") {
  Rng rng(71);
  const Shape shapes[] = {Shape{1, 1}, Shape{7, 13}, Shape{129, 257}, Shape{300, 129}, Shape{0, 5}};
  const Blocking blockings[] = {{128, 128}, {5, 5}, {1, 128}, {1, 7}};
  for (const Shape& shape : shapes) {
    for (const Blocking blocking : blockings) {
      const std::string where = fmt::format("{} blocks {}×{}", shape.to_string(), blocking.rows, blocking.cols);
      const Tensor x = wide_range(shape, rng);
      const Shape grid = blocking.grid(shape);
      const Tensor expected_q = Tensor::empty(shape, DType::fp8_e4m3);
      const Tensor expected_scale = Tensor::empty(grid, DType::f32);
      quantize(expected_q, expected_scale, x, blocking);
      const DeviceTensor q = DeviceTensor::poisoned(shape, DType::fp8_e4m3);
      const DeviceTensor scale = DeviceTensor::poisoned(grid, DType::f32);
      quantize(q, scale, DeviceTensor::upload(x), blocking);
      check_codes("quantize q " + where, q, expected_q);
      check_output("quantize scale_inv " + where, scale, expected_scale, 0.0);

      const Tensor expected_x = Tensor::empty(shape, DType::f32);
      dequantize(expected_x, expected_q, expected_scale, blocking);
      const DeviceTensor dequantized = DeviceTensor::poisoned(shape, DType::f32);
      dequantize(dequantized, DeviceTensor::upload(expected_q), DeviceTensor::upload(expected_scale), blocking);
      check_output("dequantize " + where, dequantized, expected_x, 0.0);
    }
  }
}

TEST_CASE("backend fp8: a NaN or an infinity is the CPU's error; the other blocks are written as on the CPU") {
  Rng rng(72);
  const Shape shape{300, 257};
  Tensor w = wide_range(shape, rng);
  // 128×128 blocks: block [0, 1] holds a NaN at [5, 200] and -inf at [100, 130] (the NaN is first in the block's
  // row-major order, not in column order); +inf at [3, 256] comes earlier in x but in a later block, [0, 2].
  w.data<float>()[5 * 257 + 200] = std::nanf("");
  w.data<float>()[100 * 257 + 130] = -INFINITY;
  w.data<float>()[3 * 257 + 256] = INFINITY;
  for (const Blocking blocking : {Blocking{128, 128}, Blocking{1, 128}}) {
    const Shape grid = blocking.grid(shape);
    const DeviceTensor q = DeviceTensor::poisoned(shape, DType::fp8_e4m3);
    const DeviceTensor scale = DeviceTensor::poisoned(grid, DType::f32);
    // The CPU from the same starting bytes.
    const Tensor expected_q = q.tensor().to(Device::cpu);
    const Tensor expected_scale = scale.tensor().to(Device::cpu);
    const std::string message = cpu_error_message([&] { quantize(expected_q, expected_scale, w, blocking); });
    CHECK_THROWS_WITH_AS(quantize(q, scale, DeviceTensor::upload(w), blocking), message.c_str(), dsv3::Error);
    const std::string where = fmt::format("refused quantize, blocks {}×{}", blocking.rows, blocking.cols);
    check_codes(where + " q", q, expected_q);
    check_output(where + " scale_inv", scale, expected_scale, 0.0);  // NaN where the CPU left NaN: skipped
  }
}
