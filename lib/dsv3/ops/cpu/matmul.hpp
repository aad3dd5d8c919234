#pragma once

#include "dsv3/ops/matmul.hpp"

namespace dsv3::ops::cpu {

// Arguments already validated by the public ops of matmul.hpp; a, b, c are rank 2 or 3 views.
void matmul(const Tensor& c, const Tensor& a, const Tensor& b, const GemmOptions& options);
void grouped_linear_forward(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& offsets);
void grouped_linear_backward(const Tensor& dx, const Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                             const Tensor& offsets);

}  // namespace dsv3::ops::cpu
