// fp8 e4m3 quantisation with per-block scales: 128×128 blocks for weights (the released DeepSeek-V3
// checkpoint format) and 1×128 tiles for activations. value ≈ q · scale_inv of its block, with
// scale_inv = amax/448 (1 for an all-zero block) and q rounded to nearest even, clamped to ±448.
// A NaN or infinite input is an error naming the block and the element; the other blocks are written. On CUDA
// quantisation waits for the stream to learn whether that happened; results are bit-identical to the CPU's.
#pragma once

#include "dsv3/ops/common.hpp"

namespace dsv3::ops {

inline constexpr std::int64_t kFp8BlockSize = 128;

// w: f32 [M, N]; q: fp8_e4m3 [M, N]; scale_inv: f32 [ceil(M/block), ceil(N/block)].
void fp8_quantize_blocks(const Tensor& q, const Tensor& scale_inv, const Tensor& w,
                         std::int64_t block = kFp8BlockSize, Stream stream = {});
void fp8_dequantize_blocks(const Tensor& w, const Tensor& q, const Tensor& scale_inv,
                           std::int64_t block = kFp8BlockSize, Stream stream = {});

// x: f32 [M, N]; q: fp8_e4m3 [M, N]; scale_inv: f32 [M, ceil(N/tile)].
void fp8_quantize_tiles(const Tensor& q, const Tensor& scale_inv, const Tensor& x, std::int64_t tile = kFp8BlockSize,
                        Stream stream = {});
void fp8_dequantize_tiles(const Tensor& x, const Tensor& q, const Tensor& scale_inv,
                          std::int64_t tile = kFp8BlockSize, Stream stream = {});

}  // namespace dsv3::ops
