// SwiGLU: h = silu(gate) · up, the activation of the dense FFN and of every expert.
#pragma once

#include "dsv3/ops/common.hpp"

namespace dsv3::ops {

// gate, up, h: same shape.
void swiglu_forward(const Tensor& h, const Tensor& gate, const Tensor& up, Stream stream = {});
// dgate, dup overwritten.
void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dh, const Tensor& gate, const Tensor& up,
                     Stream stream = {});

}  // namespace dsv3::ops
