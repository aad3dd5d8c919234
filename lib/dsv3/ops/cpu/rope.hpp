#pragma once

#include "dsv3/ops/rope.hpp"

#include <vector>

namespace dsv3::ops::cpu {

// cos, sin: host [max_seq_len, frequencies.size()], filled with cos(p·f_i)·magnitude, sin(p·f_i)·magnitude.
void rope_table(const Tensor& cos, const Tensor& sin, const std::vector<double>& frequencies, double magnitude);

// Shapes and dtypes already validated by the public ops of rope.hpp; the positions are checked here, where
// they are readable, before any output is written.
void rope_forward(const Tensor& y, const Tensor& x, const Tensor& cos, const Tensor& sin, const Tensor& positions);
void rope_backward(const Tensor& dx, const Tensor& dy, const Tensor& cos, const Tensor& sin, const Tensor& positions);

}  // namespace dsv3::ops::cpu
