#pragma once

#include "dsv3/ops/norm.hpp"

namespace dsv3::ops::cpu {

// Arguments already validated by the public ops of norm.hpp.
void rmsnorm_forward(const Tensor& y, const Tensor& rstd, const Tensor& x, const Tensor& w, double eps);
void rmsnorm_backward(const Tensor& dx, const Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                      const Tensor& rstd);

}  // namespace dsv3::ops::cpu
