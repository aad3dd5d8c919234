#pragma once

#include "dsv3/ops/router.hpp"

namespace dsv3::ops::cpu {

// Arguments already validated by the public ops of router.hpp.
void router_forward(const Tensor& scores, const Tensor& experts, const Tensor& weights, const Tensor& logits,
                    const Tensor& expert_bias, const RouterOptions& options);
void router_backward(const Tensor& dlogits, const Tensor& dweights, const Tensor& scores, const Tensor& experts,
                     const RouterOptions& options, const Tensor& dscores);

}  // namespace dsv3::ops::cpu
