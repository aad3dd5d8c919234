// RMSNorm: y = x · rsqrt(mean(x²) + eps) · w. The CPU accumulates the mean of squares in f64 and stores rstd in
// x's dtype; CUDA accumulates in fp32 and stores rstd in f32 whatever x's dtype (f32 or bf16).
#pragma once

#include "dsv3/ops/common.hpp"

namespace dsv3::ops {

// x: [..., D], w: [D], y: like x, rstd: [rows] with rows = numel(x)/D (the reciprocal RMS, kept for backward).
void rmsnorm_forward(const Tensor& y, const Tensor& rstd, const Tensor& x, const Tensor& w, double eps,
                     Stream stream = {});
// dx overwritten, dw accumulated.
void rmsnorm_backward(const Tensor& dx, const Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                      const Tensor& rstd, Stream stream = {});

}  // namespace dsv3::ops
