// MoE router: scores, bias-adjusted group-limited top-k selection and the routing weights (REFERENCE.md §2).
#pragma once

#include "dsv3/ops/common.hpp"

namespace dsv3::ops {

enum class RouterScore { softmax, sigmoid };

struct RouterOptions {
  RouterScore score = RouterScore::softmax;
  std::int64_t top_k = 1;
  std::int64_t n_groups = 1;    // experts viewed as [n_groups, E/n_groups]
  std::int64_t top_groups = 1;  // groups kept (group score = sum of its two largest biased scores)
  bool route_norm = false;      // divide the chosen scores by their sum (+1e-20)
  double route_scale = 1.0;
};

// logits: [T, E] (router gate output); expert_bias: f32 [E] or undefined (selection only, never in the weights).
// scores: [T, E] softmax or sigmoid of logits (kept for backward and for the balance loss);
// experts: i32 [T, K], the chosen experts by descending biased score (ties: lower index first);
// weights: [T, K], unbiased scores of the chosen experts, normalised when route_norm, times route_scale.
void router_forward(const Tensor& scores, const Tensor& experts, const Tensor& weights, const Tensor& logits,
                    const Tensor& expert_bias, const RouterOptions& options, Stream stream = {});
// dlogits [T, E] (overwritten) from dweights [T, K]; selection is piecewise constant and passes no gradient.
// dscores [T, E], when defined, is a gradient that reaches the scores other than through the weights (the
// sequence-wise balance loss): it is added to theirs before the softmax/sigmoid Jacobian.
void router_backward(const Tensor& dlogits, const Tensor& dweights, const Tensor& scores, const Tensor& experts,
                     const RouterOptions& options, const Tensor& dscores = {}, Stream stream = {});

}  // namespace dsv3::ops
