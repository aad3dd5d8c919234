#pragma once

#include "dsv3/ops/fp8.hpp"

namespace dsv3::ops::cpu {

// Arguments already validated by the public ops of fp8.hpp. x: f32 [M, N]; q: fp8_e4m3 [M, N]; scale_inv: f32
// [ceil(M/block_rows), ceil(N/block_cols)], one scale per block of block_rows × block_cols elements (the blocks
// at the bottom and right edges are partial). 128×128 blocks for weights, 1×128 tiles for activations.
// Quantisation fails, naming `op`, the block and the element, when a block holds a NaN or an infinity.
void fp8_quantize(const char* op, const Tensor& q, const Tensor& scale_inv, const Tensor& x, std::int64_t block_rows,
                  std::int64_t block_cols);
void fp8_dequantize(const Tensor& x, const Tensor& q, const Tensor& scale_inv, std::int64_t block_rows,
                    std::int64_t block_cols);

}  // namespace dsv3::ops::cpu
