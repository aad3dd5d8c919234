#pragma once

#include "dsv3/ops/loss.hpp"

namespace dsv3::ops::cpu {

// Shapes and dtypes already validated by the public ops of loss.hpp; the target values are checked here,
// where they are readable, before any output is written.
void cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& logits, const Tensor& targets,
                           std::int64_t ignore_index);
void cross_entropy_backward(const Tensor& dlogits, const Tensor& logits, const Tensor& lse, const Tensor& targets,
                            double dloss, std::int64_t ignore_index);
// targets: host i32/i64 of any shape.
std::int64_t count_valid_targets(const Tensor& targets, std::int64_t ignore_index);

}  // namespace dsv3::ops::cpu
