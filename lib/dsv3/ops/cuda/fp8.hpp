// CUDA kernels of ops/fp8.hpp. Arguments are checked by the dispatch. x: f32 [rows, cols]; q: fp8 e4m3 codes
// [rows, cols]; scale_inv: f32 [ceil(rows/block_rows), ceil(cols/block_cols)].
#pragma once

#include "dsv3/ops/cuda/backend.hpp"

namespace dsv3::cuda {

// The first NaN or infinity of a quantize call: in block order, row-major inside the block (the CPU's order).
struct NonFinite {
  bool found = false;
  std::int64_t block_row = 0, block_col = 0;  // the block in scale_inv
  std::int64_t row = 0, col = 0;              // the element in x
  float value = 0.0f;
};

// Bit-identical to the CPU: amax per block, scale_inv = amax/448 (1 when that is 0), q = x/scale_inv rounded to
// nearest even and saturated. Blocks holding a NaN or an infinity are left unwritten (the others are written) and
// the first such element is returned; the call waits for the stream to read that back.
NonFinite fp8_quantize(void* q, float* scale_inv, const float* x, std::int64_t rows, std::int64_t cols,
                       std::int64_t block_rows, std::int64_t block_cols, void* stream);
void fp8_dequantize(float* x, const void* q, const float* scale_inv, std::int64_t rows, std::int64_t cols,
                    std::int64_t block_rows, std::int64_t block_cols, void* stream);

}  // namespace dsv3::cuda
