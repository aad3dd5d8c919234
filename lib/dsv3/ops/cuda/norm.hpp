// CUDA kernels of ops/norm.hpp. Arguments are checked by the dispatch. x, y, dy, dx: [rows, dim] and w, dw: [dim]
// in `type`; rstd: f32 [rows] whatever `type` (the statistic keeps fp32 precision).
#pragma once

#include "dsv3/ops/cuda/backend.hpp"

namespace dsv3::cuda {

void rmsnorm_forward(void* y, float* rstd, const void* x, const void* w, Float type, std::int64_t rows,
                     std::int64_t dim, double eps, void* stream);
// dx overwritten; dw accumulated with a fixed summation order (no atomics): the same bits on every run.
void rmsnorm_backward(void* dx, void* dw, const void* dy, const void* x, const void* w, const float* rstd, Float type,
                      std::int64_t rows, std::int64_t dim, void* stream);

}  // namespace dsv3::cuda
