// DeepSeekMoE (REFERENCE.md §2) of one layer, explicit forward into a MoeRecord and backward from it (DESIGN.md
// "Computation"):
//
//   router:  scores = softmax or sigmoid(gate(x)); experts = group-limited top-K of scores + expert_bias;
//            weights = the unbiased scores of the chosen experts, normalised (route_norm), times route_scale
//   routed:  the T·K (token, expert) assignments sorted by expert, one grouped SwiGLU over all experts, and back:
//            routed(x)_t = Σ_k weights[t, k] · expert_{experts[t, k]}(x_t)
//   out = routed(x) + shared(x), the shared experts being one SwiGLU FFN of width moe_inter_dim · n_shared_experts
//
// plus the token counts of the aux-loss-free load balancing and the optional sequence-wise balance loss.
// T = B·S tokens, D = dim, E routed experts, K = top_k (n_activated_experts), H = moe_inter_dim.
#pragma once

#include "dsv3/model/batch_context.hpp"
#include "dsv3/model/feed_forward.hpp"
#include "dsv3/model/model_args.hpp"
#include "dsv3/model/weights.hpp"
#include "dsv3/ops/permute.hpp"

namespace dsv3::model {

struct MoeOptions {
  // α of the sequence-wise balance loss L = α Σ_i f_i P_i of each sequence (REFERENCE.md §2); 0: off.
  double balance_loss_coeff = 0.0;
  // Debug (torchtitan's _debug_force_load_balance): token t's k-th choice is expert (t·K + k) mod E whatever the
  // scores, so every expert gets T·K/E assignments (±1); the weights still come from the scores of those experts.
  bool force_load_balance = false;
};

// What backward needs, per micro-batch and layer; allocated on first use and reused for the same shapes.
struct MoeRecord {
  Tensor scores;             // [T, E]: softmax or sigmoid of the router logits gate(x)
  Tensor experts;            // i32 [T, K]: the chosen experts of each token
  Tensor weights;            // [T, K]: their routing weights
  ops::PermutePlan plan;     // the T·K assignments sorted by expert, with each expert's row range
  Tensor routed_x;           // [T·K, D]: x of each assignment in expert order, the routed experts' input
  FeedForwardRecord routed;  // [T·K, H] tensors of the routed experts' SwiGLU, in expert order
  Tensor routed_out;         // [T·K, D]: each assignment's expert output, before its weight
  FeedForwardRecord shared;  // [T, H·n_shared_experts] tensors of the shared experts (n_shared_experts > 0)
};

// x: [T, D] (the ffn_norm output), out: [T, D], the parameters' dtype (f32 for training, f64 for gradient checks).
// expert_bias: f32 [E] on x's device (selection only, never in the weights). tokens_per_expert: i64 [E] on the host,
// accumulated (+=) with this micro-batch's T·K assignments, for update_expert_bias after the optimizer step (a
// re-run of the forward for activation checkpointing should pass a scratch counter, not to count twice).
// Returns the sequence-wise balance loss α Σ_i f_i P_i of each of the B sequences of the batch, summed over them
// (0 when options.balance_loss_coeff is 0). The caller normalises: e.g. a mean over all sequences of the step is
// balance_scale = 1/(sequences per step) passed back as moe_backward's dbalance. CPU tensors.
double moe_forward(const Tensor& out, MoeRecord& record, const Tensor& x, const MoeWeights& w,
                   const Tensor& expert_bias, const Tensor& tokens_per_expert, const ModelArgs& args,
                   const BatchContext& batch, const MoeOptions& options);

// dx: [T, D], overwritten; dout: [T, D]. Parameter gradients are accumulated into `grads`. dbalance: the gradient of
// the total loss with respect to moe_forward's returned balance loss (unused when the coefficient is 0). `record`
// and `options` are those of the forward.
void moe_backward(const Tensor& dx, const Tensor& dout, const MoeRecord& record, const Tensor& x, const MoeWeights& w,
                  const MoeWeights& grads, const ModelArgs& args, const BatchContext& batch, double dbalance,
                  const MoeOptions& options);

// The aux-loss-free load balancing step (REFERENCE.md §2), after an optimizer step:
// Δ = coeff · sign(mean(n) − n), Δ −= mean(Δ), expert_bias += Δ.
// expert_bias: f32 [E] on any device; tokens_per_expert: i64 [E] on the host (n, already summed over the data- and
// context-parallel ranks by the caller, who then resets it).
void update_expert_bias(const Tensor& expert_bias, const Tensor& tokens_per_expert, double coeff);

}  // namespace dsv3::model
