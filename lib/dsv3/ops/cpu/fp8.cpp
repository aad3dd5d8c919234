#include "dsv3/ops/cpu/fp8.hpp"

#include <algorithm>
#include <array>
#include <cmath>

namespace dsv3::ops::cpu {

namespace {

// The element range of block `block` (row-major over the block grid of scale_inv).
struct BlockExtent {
  std::int64_t row_begin, row_end, col_begin, col_end;
};

BlockExtent block_extent(std::int64_t block, const Tensor& x, const Tensor& scale_inv, std::int64_t block_rows,
                         std::int64_t block_cols) {
  const std::int64_t row_begin = block / scale_inv.size(1) * block_rows;
  const std::int64_t col_begin = block % scale_inv.size(1) * block_cols;
  return {row_begin, std::min(row_begin + block_rows, x.size(0)), col_begin,
          std::min(col_begin + block_cols, x.size(1))};
}

// Names the block and its first NaN or infinity. Called after the parallel loop: an exception must not leave an
// OpenMP region.
[[noreturn]] void fail_non_finite(const char* op, const Tensor& x, const Tensor& scale_inv, std::int64_t block,
                                  const BlockExtent& extent) {
  const float* values = x.data<float>();
  std::int64_t row = extent.row_begin, col = extent.col_begin;
  while (std::isfinite(values[row * x.size(1) + col])) {  // ends inside the block, which holds a non-finite value
    if (++col == extent.col_end) {
      col = extent.col_begin;
      ++row;
    }
  }
  fail("{}: block [{}, {}] of {} holds {} at [{}, {}]; fp8 scales need finite values", op,
       block / scale_inv.size(1), block % scale_inv.size(1), x.describe(), values[row * x.size(1) + col], row, col);
}

}  // namespace

void fp8_quantize(const char* op, const Tensor& q, const Tensor& scale_inv, const Tensor& x, std::int64_t block_rows,
                  std::int64_t block_cols) {
  const std::int64_t cols = x.size(1);
  const std::int64_t blocks = scale_inv.numel();
  const float* values = x.data<float>();
  fp8_e4m3* codes = q.data<fp8_e4m3>();
  float* scales = scale_inv.data<float>();
  std::int64_t first_non_finite_block = blocks;  // none
#pragma omp parallel for schedule(static) reduction(min : first_non_finite_block)
  for (std::int64_t block = 0; block < blocks; ++block) {
    const BlockExtent extent = block_extent(block, x, scale_inv, block_rows, block_cols);
    float amax = 0.0f;
    bool finite = true;
    for (std::int64_t row = extent.row_begin; row < extent.row_end; ++row) {
      for (std::int64_t col = extent.col_begin; col < extent.col_end; ++col) {
        const float value = values[row * cols + col];
        amax = std::max(amax, std::fabs(value));
        finite &= std::isfinite(value);
      }
    }
    if (!finite) {
      first_non_finite_block = std::min(first_non_finite_block, block);
      continue;
    }
    // The amax element maps to ±448 (saturation absorbs the rounding of amax/scale). A scale of 0 (an all-zero
    // block, or amax ≤ 448·2^-150 so that amax/448 underflows) becomes 1: every code is then 0 and the block
    // dequantises to exactly zero, instead of dividing by zero.
    float scale = amax / kFp8E4m3Max;
    if (scale == 0.0f) scale = 1.0f;
    scales[block] = scale;
    for (std::int64_t row = extent.row_begin; row < extent.row_end; ++row) {
      for (std::int64_t col = extent.col_begin; col < extent.col_end; ++col) {
        codes[row * cols + col] = f32_to_fp8_e4m3(values[row * cols + col] / scale);
      }
    }
  }
  if (first_non_finite_block < blocks) {
    fail_non_finite(op, x, scale_inv, first_non_finite_block,
                    block_extent(first_non_finite_block, x, scale_inv, block_rows, block_cols));
  }
}

void fp8_dequantize(const Tensor& x, const Tensor& q, const Tensor& scale_inv, std::int64_t block_rows,
                    std::int64_t block_cols) {
  const std::int64_t rows = x.size(0);
  const std::int64_t cols = x.size(1);
  const fp8_e4m3* codes = q.data<fp8_e4m3>();
  const float* scales = scale_inv.data<float>();
  float* values = x.data<float>();
  // The 256 codes decoded once, and one scale per run of block_cols columns: dequantizing a checkpoint
  // (dsv3_convert_hf) is a table lookup and a multiply per element.
  std::array<float, 256> decoded{};
  for (int code = 0; code < 256; ++code) decoded[code] = fp8_e4m3_to_f32(fp8_e4m3{static_cast<std::uint8_t>(code)});
#pragma omp parallel for schedule(static)
  for (std::int64_t row = 0; row < rows; ++row) {
    const float* row_scales = scales + row / block_rows * scale_inv.size(1);  // [ceil(N/block_cols)]
    for (std::int64_t col_begin = 0; col_begin < cols; col_begin += block_cols) {
      const float scale = row_scales[col_begin / block_cols];
      const std::int64_t col_end = std::min(col_begin + block_cols, cols);
      for (std::int64_t col = col_begin; col < col_end; ++col)
        values[row * cols + col] = decoded[codes[row * cols + col].bits] * scale;
    }
  }
}

}  // namespace dsv3::ops::cpu
