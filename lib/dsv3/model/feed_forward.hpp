// SwiGLU feed-forward (REFERENCE.md §2): out = w2(silu(w1 x) · w3 x), w1 = gate, w3 = up, w2 = down; explicit
// forward into a FeedForwardRecord and backward from it (DESIGN.md "Computation").
//
// One implementation serves every FFN of the model: the dense FFN of the first layers (width inter_dim), the shared
// experts of an MoE layer (one FFN of width moe_inter_dim · n_shared_experts) and, given expert offsets, all routed
// experts at once over token rows sorted by expert (stacked weights, grouped products).
//
// R rows (T = B·S tokens, or the T·K expert-sorted assignments), D = dim, H = hidden width.
#pragma once

#include "dsv3/model/weights.hpp"

namespace dsv3::model {

// What backward needs, per micro-batch; allocated on first use (ensure_tensor) and reused for the same shapes.
struct FeedForwardRecord {
  Tensor gate;    // [R, H]: w1 x
  Tensor up;      // [R, H]: w3 x
  Tensor hidden;  // [R, H]: silu(gate) · up, the input of w2
};

// x, out: [R, D], the parameters' dtype (f32 for training, f64 for gradient checks).
// Without expert_offsets: w1, w3 [H, D], w2 [D, H]. With expert_offsets (i64 [E + 1] on the host, e.g.
// PermutePlan::offsets): w1, w3 [E, H, D], w2 [E, D, H], and expert e transforms rows [offsets[e], offsets[e+1]).
void feed_forward_forward(const Tensor& out, FeedForwardRecord& record, const Tensor& x, const FeedForwardWeights& w,
                          const Tensor& expert_offsets = {});

// dx: [R, D], overwritten (skipped when undefined); dout: [R, D]. Parameter gradients are accumulated into `grads`
// (the same struct bound to the gradient tensors). `record` and `expert_offsets` are those of the forward.
void feed_forward_backward(const Tensor& dx, const Tensor& dout, const FeedForwardRecord& record, const Tensor& x,
                           const FeedForwardWeights& w, const FeedForwardWeights& grads,
                           const Tensor& expert_offsets = {});

}  // namespace dsv3::model
