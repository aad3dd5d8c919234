#pragma once

#include "dsv3/ops/permute.hpp"

namespace dsv3::ops::cpu {

// Arguments already validated by the public ops of permute.hpp (the expert ids are checked here, while counting).
PermutePlan make_permute_plan(const Tensor& experts, std::int64_t num_experts);
void permute_forward(const Tensor& y, const Tensor& x, const PermutePlan& plan);
void permute_backward(const Tensor& dx, const Tensor& dy, const PermutePlan& plan);
void unpermute_forward(const Tensor& y, const Tensor& expert_out, const Tensor& weights, const PermutePlan& plan);
void unpermute_backward(const Tensor& dexpert_out, const Tensor& dweights, const Tensor& dy,
                        const Tensor& expert_out, const Tensor& weights, const PermutePlan& plan);

}  // namespace dsv3::ops::cpu
