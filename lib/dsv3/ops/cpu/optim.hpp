#pragma once

#include "dsv3/ops/optim.hpp"

namespace dsv3::ops::cpu {

// Arguments already validated by the public ops of optim.hpp.
void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                const AdamWOptions& options);
double sum_of_squares(const Tensor& x);

}  // namespace dsv3::ops::cpu
