#pragma once

#include "dsv3/ops/embedding.hpp"

namespace dsv3::ops::cpu {

// Shapes and dtypes already validated by the public ops of embedding.hpp; the id values are checked here,
// where they are readable, before any output is written.
void embedding_forward(const Tensor& y, const Tensor& table, const Tensor& ids);
void embedding_backward(const Tensor& dtable, const Tensor& dy, const Tensor& ids);

}  // namespace dsv3::ops::cpu
