#include "dsv3/ops/fp8.hpp"

#include "dsv3/ops/cpu/fp8.hpp"
#include "dsv3/ops/cuda/fp8.hpp"
#include "dsv3/ops/cuda_dispatch.hpp"

namespace dsv3::ops {

namespace {

void expect_block_size(const char* op, const char* name, std::int64_t size) {
  DSV3_CHECK(size >= 1, "{}: {} is {}, expected >= 1", op, name, size);
}

// x: f32 [M, N] (`x_name` in messages); q: fp8_e4m3 [M, N]; scale_inv: f32 [ceil(M/block_rows), ceil(N/block_cols)].
void check_fp8(const char* op, const char* x_name, const Tensor& x, const Tensor& q, const Tensor& scale_inv,
               std::int64_t block_rows, std::int64_t block_cols) {
  expect_dtype(op, x_name, x, DType::f32);
  expect_rank(op, x_name, x, 2);
  expect_dtype(op, "q", q, DType::fp8_e4m3);
  expect_shape(op, "q", q, x.shape());
  expect_dtype(op, "scale_inv", scale_inv, DType::f32);
  const auto blocks = [](std::int64_t extent, std::int64_t block) { return (extent + block - 1) / block; };
  expect_shape(op, "scale_inv", scale_inv, Shape{blocks(x.size(0), block_rows), blocks(x.size(1), block_cols)});
  expect_same_device(op, {&x, &q, &scale_inv});
}

// The CPU's error for a block holding a NaN or an infinity, from what the kernel found. These two are unused in a
// build without CUDA.
[[maybe_unused]] void quantize_on_cuda(const char* op, const Tensor& q, const Tensor& scale_inv, const Tensor& x,
                                       std::int64_t block_rows, std::int64_t block_cols, Stream stream) {
  const cuda::NonFinite bad = cuda::fp8_quantize(q.raw(), scale_inv.data<float>(), x.data<float>(), x.size(0),
                                                 x.size(1), block_rows, block_cols, stream.handle);
  DSV3_CHECK(!bad.found, "{}: block [{}, {}] of {} holds {} at [{}, {}]; fp8 scales need finite values", op,
             bad.block_row, bad.block_col, x.describe(), bad.value, bad.row, bad.col);
}

[[maybe_unused]] void dequantize_on_cuda(const Tensor& x, const Tensor& q, const Tensor& scale_inv,
                                         std::int64_t block_rows, std::int64_t block_cols, Stream stream) {
  cuda::fp8_dequantize(x.data<float>(), q.raw(), scale_inv.data<float>(), x.size(0), x.size(1), block_rows, block_cols,
                       stream.handle);
}

}  // namespace

void fp8_quantize_blocks(const Tensor& q, const Tensor& scale_inv, const Tensor& w, std::int64_t block, Stream stream) {
  const char* op = "fp8_quantize_blocks";
  expect_block_size(op, "block", block);
  check_fp8(op, "w", w, q, scale_inv, block, block);
  if (w.device() == Device::cuda) return DSV3_ON_CUDA(op, quantize_on_cuda(op, q, scale_inv, w, block, block, stream));
  cpu::fp8_quantize(op, q, scale_inv, w, block, block);
}

void fp8_dequantize_blocks(const Tensor& w, const Tensor& q, const Tensor& scale_inv, std::int64_t block,
                           Stream stream) {
  const char* op = "fp8_dequantize_blocks";
  expect_block_size(op, "block", block);
  check_fp8(op, "w", w, q, scale_inv, block, block);
  if (w.device() == Device::cuda) return DSV3_ON_CUDA(op, dequantize_on_cuda(w, q, scale_inv, block, block, stream));
  cpu::fp8_dequantize(w, q, scale_inv, block, block);
}

void fp8_quantize_tiles(const Tensor& q, const Tensor& scale_inv, const Tensor& x, std::int64_t tile, Stream stream) {
  const char* op = "fp8_quantize_tiles";
  expect_block_size(op, "tile", tile);
  check_fp8(op, "x", x, q, scale_inv, 1, tile);
  if (x.device() == Device::cuda) return DSV3_ON_CUDA(op, quantize_on_cuda(op, q, scale_inv, x, 1, tile, stream));
  cpu::fp8_quantize(op, q, scale_inv, x, 1, tile);
}

void fp8_dequantize_tiles(const Tensor& x, const Tensor& q, const Tensor& scale_inv, std::int64_t tile, Stream stream) {
  const char* op = "fp8_dequantize_tiles";
  expect_block_size(op, "tile", tile);
  check_fp8(op, "x", x, q, scale_inv, 1, tile);
  if (x.device() == Device::cuda) return DSV3_ON_CUDA(op, dequantize_on_cuda(x, q, scale_inv, 1, tile, stream));
  cpu::fp8_dequantize(x, q, scale_inv, 1, tile);
}

}  // namespace dsv3::ops
