#include "dsv3/ops/fp8.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

#include <cmath>

using namespace dsv3;
using namespace dsv3::testing;

namespace {

const std::vector<Shape> kShapes{Shape{300, 257}, Shape{1, 1}, Shape{128, 128}, Shape{129, 1}, Shape{0, 5}};

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// Blocks of rows × cols elements: {b, b} for the weight format, {1, t} for activation tiles.
struct Blocking {
  std::int64_t rows, cols;
  Shape grid(const Tensor& x) const { return Shape{ceil_div(x.size(0), rows), ceil_div(x.size(1), cols)}; }
};

struct Quantized {
  Tensor q, scale_inv;
};

// Normal values times 2^k, k uniform in [-24, 4]: every block mixes magnitudes, down to fp8's subnormals.
Tensor wide_range(Shape shape, Rng& rng) {
  Tensor x = random_normal(shape, DType::f32, rng);
  std::uniform_int_distribution<int> exponent(-24, 4);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = std::ldexp(x.data<float>()[i], exponent(rng));
  return x;
}

// The op under test, blocks or tiles.
Quantized quantize(const Tensor& x, Blocking blocking) {
  Quantized result{Tensor::empty(x.shape(), DType::fp8_e4m3), Tensor::empty(blocking.grid(x), DType::f32)};
  if (blocking.rows == 1) {
    ops::fp8_quantize_tiles(result.q, result.scale_inv, x, blocking.cols);
  } else {
    ops::fp8_quantize_blocks(result.q, result.scale_inv, x, blocking.rows);
  }
  return result;
}

Tensor dequantize(const Quantized& quantized, Blocking blocking) {
  Tensor x = Tensor::empty(quantized.q.shape(), DType::f32);
  if (blocking.rows == 1) {
    ops::fp8_dequantize_tiles(x, quantized.q, quantized.scale_inv, blocking.cols);
  } else {
    ops::fp8_dequantize_blocks(x, quantized.q, quantized.scale_inv, blocking.rows);
  }
  return x;
}

// The format by its definition, one block at a time: s = amax/448 (1 for an all-zero block), q = rne(x/s).
Quantized naive_quantize(const Tensor& x, Blocking blocking) {
  const std::int64_t rows = x.size(0), cols = x.size(1);
  const Shape grid = blocking.grid(x);
  Quantized result{Tensor::empty(x.shape(), DType::fp8_e4m3), Tensor::empty(grid, DType::f32)};
  const float* w = x.data<float>();
  for (std::int64_t bi = 0; bi < grid[0]; ++bi) {
    for (std::int64_t bj = 0; bj < grid[1]; ++bj) {
      const std::int64_t row_end = std::min(rows, (bi + 1) * blocking.rows);
      const std::int64_t col_end = std::min(cols, (bj + 1) * blocking.cols);
      float amax = 0.0f;
      for (std::int64_t i = bi * blocking.rows; i < row_end; ++i) {
        for (std::int64_t j = bj * blocking.cols; j < col_end; ++j) amax = std::max(amax, std::fabs(w[i * cols + j]));
      }
      const float s = amax == 0.0f ? 1.0f : amax / 448.0f;
      result.scale_inv.data<float>()[bi * grid[1] + bj] = s;
      for (std::int64_t i = bi * blocking.rows; i < row_end; ++i) {
        for (std::int64_t j = bj * blocking.cols; j < col_end; ++j) {
          result.q.data<fp8_e4m3>()[i * cols + j] = f32_to_fp8_e4m3(w[i * cols + j] / s);
        }
      }
    }
  }
  return result;
}

Tensor naive_dequantize(const Quantized& quantized, Blocking blocking) {
  const std::int64_t cols = quantized.q.size(1);
  const std::int64_t grid_cols = quantized.scale_inv.size(1);
  Tensor x = Tensor::empty(quantized.q.shape(), DType::f32);
  for (std::int64_t i = 0; i < x.size(0); ++i) {
    for (std::int64_t j = 0; j < cols; ++j) {
      const float s = quantized.scale_inv.data<float>()[i / blocking.rows * grid_cols + j / blocking.cols];
      x.data<float>()[i * cols + j] = fp8_e4m3_to_f32(quantized.q.data<fp8_e4m3>()[i * cols + j]) * s;
    }
  }
  return x;
}

const std::vector<Blocking> kBlockings{{128, 128}, {5, 5}, {1, 128}, {1, 7}};

}  // namespace

TEST_CASE("fp8 quantize and dequantize match the definition, blocks and tiles, partial edges included") {
  Rng rng(1);
  for (const Blocking& blocking : kBlockings) {
    for (const Shape& shape : kShapes) {
      CAPTURE(blocking.rows);
      CAPTURE(blocking.cols);
      CAPTURE(shape);
      const Tensor x = wide_range(shape, rng);
      const Quantized actual = quantize(x, blocking);
      const Quantized expected = naive_quantize(x, blocking);
      DSV3_CHECK_CLOSE(compare(actual.scale_inv, expected.scale_inv, 0.0, 0.0));
      DSV3_CHECK_CLOSE(compare(actual.q, expected.q, 0.0, 0.0));
      DSV3_CHECK_CLOSE(compare(dequantize(actual, blocking), naive_dequantize(actual, blocking), 0.0, 0.0));
    }
  }
}

TEST_CASE("fp8 round trip: within half an e4m3 ulp, the amax element at exactly ±448") {
  // x̂ = fl(rne8(fl(x/s))·s). rne8 errs by half an ulp: ≤ 2^-4·|x/s| among normals, ≤ 2^-10 among the
  // subnormals (|x/s| < 2^-6); the f32 division and product add below 2^-22·|x|. So, per element,
  //   |x − x̂| ≤ (2^-4 + 2^-22)·|x| + 2^-10·(1 + 2^-22)·s.
  Rng rng(2);
  for (const Blocking& blocking : kBlockings) {
    for (const Shape& shape : kShapes) {
      CAPTURE(blocking.rows);
      CAPTURE(blocking.cols);
      CAPTURE(shape);
      const Tensor x = wide_range(shape, rng);
      const Quantized quantized = quantize(x, blocking);
      const Tensor round_trip = dequantize(quantized, blocking);
      const std::int64_t cols = x.size(1), grid_cols = quantized.scale_inv.size(1);
      const auto block_of = [&](std::int64_t i) {  // flat element index → flat block index
        return static_cast<std::size_t>(i / cols / blocking.rows * grid_cols + i % cols / blocking.cols);
      };
      std::vector<float> amax(static_cast<std::size_t>(quantized.scale_inv.numel()), 0.0f);
      for (std::int64_t i = 0; i < x.numel(); ++i) {
        amax[block_of(i)] = std::max(amax[block_of(i)], std::fabs(x.data<float>()[i]));
      }
      std::int64_t out_of_bound = 0, amax_not_448 = 0;
      for (std::int64_t i = 0; i < x.numel(); ++i) {
        const float value = x.data<float>()[i];
        const double s = quantized.scale_inv.data<float>()[block_of(i)];
        const double bound = (0x1p-4 + 0x1p-22) * std::fabs(value) + 0x1p-10 * (1 + 0x1p-22) * s;
        out_of_bound += std::fabs(value - round_trip.data<float>()[i]) > bound;
        const float code_value = fp8_e4m3_to_f32(quantized.q.data<fp8_e4m3>()[i]);
        if (std::fabs(value) == amax[block_of(i)]) amax_not_448 += code_value != std::copysign(448.0f, value);
      }
      CHECK(out_of_bound == 0);
      CHECK(amax_not_448 == 0);
    }
  }
}

TEST_CASE("fp8 by hand: a 2×2 matrix as one 2×2 block, as two 1×2 tiles and as four 1×1 blocks") {
  const Tensor w = from_values(Shape{2, 2}, DType::f32, {1.0, -3.0, 0.3, 3.5});

  // One block, amax 3.5: s = 3.5/448 = 2^-7; w/s = 128, −384, 38.4, 448; 38.4 rounds to 40 (step 4 in [32, 64)).
  const Quantized block = quantize(w, {2, 2});
  CHECK(to_vector(block.scale_inv) == std::vector<double>{0x1p-7});
  CHECK(to_vector(block.q) == std::vector<double>{128, -384, 40, 448});
  CHECK(to_vector(dequantize(block, {2, 2})) == std::vector<double>{1.0, -3.0, 0.3125, 3.5});

  // Two tiles: row 0 has amax 3, s = 3/448, 1/s = 149.3 rounds to 144 (step 16 in [128, 256)); row 1 as above.
  const Quantized tiles = quantize(w, {1, 2});
  CHECK(to_vector(tiles.scale_inv) == std::vector<double>{3.0f / 448.0f, 0x1p-7});
  CHECK(to_vector(tiles.q) == std::vector<double>{144, -448, 40, 448});
  DSV3_CHECK_CLOSE(compare(dequantize(tiles, {1, 2}),
                           from_values(Shape{2, 2}, DType::f64, {144.0 * 3.0 / 448.0, -3.0, 0.3125, 3.5}), 3e-7, 0.0));

  // One block per element: every element is its block's amax. (3e-7: the f32 roundings of s and of q·s.)
  const Quantized singles = quantize(w, {1, 1});
  CHECK(to_vector(singles.q) == std::vector<double>{448, -448, 448, 448});
  DSV3_CHECK_CLOSE(compare(dequantize(singles, {1, 1}), w, 3e-7, 0.0));
}

TEST_CASE("fp8: an all-zero block gets scale 1, zero codes, and dequantises to exact zeros") {
  Rng rng(3);
  Tensor w = wide_range(Shape{200, 300}, rng);
  for (std::int64_t i = 128; i < 200; ++i) {
    for (std::int64_t j = 256; j < 300; ++j) w.data<float>()[i * 300 + j] = 0.0f;  // the partial corner block [1, 2]
  }
  const Quantized quantized = quantize(w, {128, 128});
  CHECK(quantized.scale_inv.data<float>()[1 * 3 + 2] == 1.0f);
  const Tensor round_trip = dequantize(quantized, {128, 128});
  std::int64_t nonzero_codes = 0, nonzero_values = 0;
  for (std::int64_t i = 128; i < 200; ++i) {
    for (std::int64_t j = 256; j < 300; ++j) {
      nonzero_codes += quantized.q.data<fp8_e4m3>()[i * 300 + j].bits != 0;
      nonzero_values += !(round_trip.data<float>()[i * 300 + j] == 0.0f);
    }
  }
  CHECK(nonzero_codes == 0);
  CHECK(nonzero_values == 0);
}

TEST_CASE("fp8 quantisation of a NaN or an infinity fails, naming the block and the element") {
  Rng rng(4);
  Tensor w = wide_range(Shape{300, 257}, rng);
  w.data<float>()[130 * 257 + 5] = std::nanf("");
  const Tensor q = Tensor::empty(w.shape(), DType::fp8_e4m3);
  CHECK_THROWS_WITH_AS(
      ops::fp8_quantize_blocks(q, Tensor::empty(Shape{3, 3}, DType::f32), w),
      doctest::Contains("fp8_quantize_blocks: block [1, 0] of f32[300, 257]@cpu holds nan at [130, 5]"), dsv3::Error);
  w.data<float>()[130 * 257 + 5] = 1.0f;
  w.data<float>()[7 * 257 + 256] = -INFINITY;
  CHECK_THROWS_WITH_AS(
      ops::fp8_quantize_tiles(q, Tensor::empty(Shape{300, 3}, DType::f32), w),
      doctest::Contains("fp8_quantize_tiles: block [7, 2] of f32[300, 257]@cpu holds -inf at [7, 256]"), dsv3::Error);
}

TEST_CASE("fp8 ops reject bad dtypes, shapes and block sizes with the op in the message") {
  const Tensor w = Tensor::zeros(Shape{300, 257}, DType::f32);
  const Tensor q = Tensor::zeros(Shape{300, 257}, DType::fp8_e4m3);
  const Tensor block_scales = Tensor::zeros(Shape{3, 3}, DType::f32);
  const Tensor tile_scales = Tensor::zeros(Shape{300, 3}, DType::f32);
  CHECK_THROWS_WITH_AS(ops::fp8_quantize_blocks(q, Tensor::zeros(Shape{2, 3}, DType::f32), w),
                       doctest::Contains("fp8_quantize_blocks: scale_inv is f32[2, 3]@cpu, expected shape [3, 3]"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::fp8_quantize_blocks(w, block_scales, w),
                       doctest::Contains("fp8_quantize_blocks: q is f32[300, 257]@cpu, expected dtype fp8_e4m3"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::fp8_quantize_blocks(q, block_scales, Tensor::zeros(Shape{300, 257}, DType::f64)),
                       doctest::Contains("fp8_quantize_blocks: w is f64[300, 257]@cpu, expected dtype f32"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::fp8_quantize_blocks(q, block_scales, w, 0),
                       doctest::Contains("fp8_quantize_blocks: block is 0, expected >= 1"), dsv3::Error);
  CHECK_THROWS_WITH_AS(
      ops::fp8_dequantize_blocks(w, Tensor::zeros(Shape{300, 256}, DType::fp8_e4m3), block_scales),
      doctest::Contains("fp8_dequantize_blocks: q is fp8_e4m3[300, 256]@cpu, expected shape [300, 257]"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::fp8_dequantize_blocks(Tensor::zeros(Shape{300}, DType::f32), q, block_scales),
                       doctest::Contains("fp8_dequantize_blocks: w is f32[300]@cpu, expected rank 2"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::fp8_quantize_tiles(q, block_scales, w),
                       doctest::Contains("fp8_quantize_tiles: scale_inv is f32[3, 3]@cpu, expected shape [300, 3]"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::fp8_dequantize_tiles(w, q, tile_scales, -1),
                       doctest::Contains("fp8_dequantize_tiles: tile is -1, expected >= 1"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::fp8_dequantize_tiles(w, q, Tensor::zeros(Shape{300, 3}, DType::bf16)),
                       doctest::Contains("fp8_dequantize_tiles: scale_inv is bf16[300, 3]@cpu, expected dtype f32"),
                       dsv3::Error);
}
