// Token permutation for the routed experts: the T·K (token, expert) assignments sorted by expert so every
// expert sees one contiguous block of rows (the layout of grouped_linear), and the weighted way back.
#pragma once

#include "dsv3/ops/common.hpp"

namespace dsv3::ops {

// The expert-sorted order of the assignments of experts: i32 [T, K] over E experts, stable in (t, k) order.
struct PermutePlan {
  Tensor source_rows;  // i32 [T·K]: the token of each sorted row
  Tensor slot_rows;    // i32 [T, K]: the sorted row of assignment (t, k)
  Tensor offsets;      // i64 [E + 1] on the host: expert e owns sorted rows [offsets[e], offsets[e+1])
};

// For CUDA experts the row maps are CUDA tensors too (made on the host: the offsets must be there anyway).
PermutePlan make_permute_plan(const Tensor& experts, std::int64_t num_experts);

// y[r] = x[source_rows[r]].  x: [T, D], y: [T·K, D].
void permute_forward(const Tensor& y, const Tensor& x, const PermutePlan& plan, Stream stream = {});
// dx[t] = Σ over rows r of token t of dy[r] (overwritten).
void permute_backward(const Tensor& dx, const Tensor& dy, const PermutePlan& plan, Stream stream = {});

// y[t] = Σ_k weights[t, k] · expert_out[slot_rows[t, k]].  expert_out: [T·K, D], weights: [T, K], y: [T, D].
void unpermute_forward(const Tensor& y, const Tensor& expert_out, const Tensor& weights, const PermutePlan& plan,
                       Stream stream = {});
// dexpert_out[slot_rows[t, k]] = weights[t, k] · dy[t]; dweights[t, k] = dy[t] · expert_out[slot_rows[t, k]]
// (both overwritten).
void unpermute_backward(const Tensor& dexpert_out, const Tensor& dweights, const Tensor& dy,
                        const Tensor& expert_out, const Tensor& weights, const PermutePlan& plan, Stream stream = {});

}  // namespace dsv3::ops
