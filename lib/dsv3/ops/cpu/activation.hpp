#pragma once

#include "dsv3/ops/activation.hpp"

namespace dsv3::ops::cpu {

// Arguments already validated by the public ops of activation.hpp. Element-wise, so any output may alias
// any input.
void swiglu_forward(const Tensor& h, const Tensor& gate, const Tensor& up);
void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dh, const Tensor& gate, const Tensor& up);

}  // namespace dsv3::ops::cpu
