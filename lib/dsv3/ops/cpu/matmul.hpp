#pragma once

#include "dsv3/ops/matmul.hpp"

namespace dsv3::ops::cpu {

// Arguments already validated by the public ops of matmul.hpp; a, b, c are rank 2 or 3 views.
void matmul(const Tensor& c, const Tensor& a, const Tensor& b, const GemmOptions& options);
// dx = dy · w (skipped when dx is undefined) and dw += dyᵀ · x, the two products at once; x, dy, dx are
// contiguous [..., features].
void linear_backward(const Tensor& dx, const Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w);
void grouped_linear_forward(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& offsets);
void grouped_linear_backward(const Tensor& dx, const Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                             const Tensor& offsets);

}  // namespace dsv3::ops::cpu
