#include "dsv3/model/moe.hpp"

#include "dsv3/ops/cpu/dispatch.hpp"
#include "dsv3/ops/elementwise.hpp"
#include "dsv3/ops/matmul.hpp"
#include "dsv3/ops/router.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace dsv3::model {

namespace {

ops::RouterOptions router_options(const ModelArgs& args) {
  return {.score = args.score_func == ScoreFunction::sigmoid ? ops::RouterScore::sigmoid : ops::RouterScore::softmax,
          .top_k = args.n_activated_experts,
          .n_groups = args.n_expert_groups,
          .top_groups = args.n_limited_groups,
          .route_norm = args.route_norm,
          .route_scale = args.route_scale};
}

// x (or out, dx, dout) is [T, dim] for the batch.
void check_tokens(const char* op, const char* name, const Tensor& x, std::int64_t tokens, std::int64_t dim) {
  DSV3_CHECK(x.defined() && x.rank() == 2 && x.size(0) == tokens && x.size(1) == dim,
             "{}: {} is {}, expected [B·S = {}, dim = {}]", op, name, x.defined() ? x.describe() : "undefined", tokens,
             dim);
}

// MoeOptions::force_load_balance: overwrites the router's choice with experts[t, k] = (t·K + k) mod E (K ≤ E
// consecutive experts, so never one twice), and makes the weights from the scores of those experts as the router
// does (unbiased, normalised when route_norm, times route_scale), so that router_backward applies unchanged.
void route_round_robin(const Tensor& experts, const Tensor& weights, const Tensor& scores,
                       const ops::RouterOptions& options) {
  const char* op = "moe force_load_balance";
  if (scores.device() != Device::cpu) {  // a debugging aid: on host copies of the [T, E] and [T, K] tensors
    const Tensor host_experts = experts.to(Device::cpu), host_weights = weights.to(Device::cpu);
    route_round_robin(host_experts, host_weights, scores.to(Device::cpu), options);
    experts.copy_from(host_experts);
    weights.copy_from(host_weights);
    return;
  }
  const std::int64_t tokens = scores.size(0);
  const std::int64_t num_experts = scores.size(1);
  const std::int64_t top_k = options.top_k;
  std::int32_t* expert = experts.data<std::int32_t>();  // [T, K]
  ops::cpu::with_float_type(scores.dtype(), op, [&]<class T>() {
    const T* score = scores.data<T>();  // [T, E]
    T* weight = weights.data<T>();      // [T, K]
    for (std::int64_t t = 0; t < tokens; ++t) {
      T chosen_sum = 0;
      for (std::int64_t k = 0; k < top_k; ++k) {
        const std::int64_t e = (t * top_k + k) % num_experts;
        expert[t * top_k + k] = static_cast<std::int32_t>(e);
        weight[t * top_k + k] = score[t * num_experts + e];
        chosen_sum += score[t * num_experts + e];
      }
      for (std::int64_t k = 0; k < top_k; ++k) {
        if (options.route_norm) weight[t * top_k + k] /= chosen_sum + static_cast<T>(1e-20);
        weight[t * top_k + k] *= static_cast<T>(options.route_scale);
      }
    }
  });
}

// tokens_per_expert[e] += the number of sorted rows expert e owns in the plan.
void count_assignments(const Tensor& tokens_per_expert, const Tensor& offsets) {
  const std::int64_t* offset = offsets.data<std::int64_t>();     // [E + 1]
  std::int64_t* count = tokens_per_expert.data<std::int64_t>();  // [E]
  for (std::int64_t e = 0; e < tokens_per_expert.numel(); ++e) count[e] += offset[e + 1] - offset[e];
}

// The sequence-wise balance loss (REFERENCE.md §2) summed over the batch's B sequences of S tokens,
//   L = α Σ_b Σ_i f_i P_i,  f_i = E/(K·S) · #{t ∈ b : i chosen for t},  P_i = 1/S · Σ_{t ∈ b} s_{i,t} / u_t,
// u_t = Σ_j s_{j,t}; so token t contributes α/S · Σ_i f_i s_{i,t} / u_t. When dscores [T, E] is defined it receives
// dloss · ∂L/∂s (overwritten); the counts f are piecewise constant in s, so
//   ∂L/∂s_{j,t} = α/S · (f_j − Σ_i f_i s_{i,t} / u_t) / u_t.
double sequence_balance_loss(const Tensor& scores, const Tensor& experts, const BatchContext& batch, double alpha,
                             const Tensor& dscores, double dloss) {
  const char* op = "moe sequence_balance_loss";
  if (scores.device() != Device::cpu) {
    // On host copies: [T, E] scores are small next to the layer's activations, and the loss is a host scalar.
    const Tensor host_dscores = dscores.defined() ? Tensor::empty(dscores.shape(), dscores.dtype()) : Tensor();
    const double loss = sequence_balance_loss(scores.to(Device::cpu), experts.to(Device::cpu), batch, alpha,
                                              host_dscores, dloss);
    if (dscores.defined()) dscores.copy_from(host_dscores);
    return loss;
  }
  const std::int64_t num_experts = scores.size(1);
  const std::int64_t top_k = experts.size(1);
  const std::int64_t seq_len = batch.seq_len;
  const double count_scale = static_cast<double>(num_experts) / static_cast<double>(top_k * seq_len);
  const double token_scale = alpha / static_cast<double>(seq_len);
  const std::int32_t* expert = experts.data<std::int32_t>();  // [T, K]
  double loss = 0.0;
  ops::cpu::with_float_type(scores.dtype(), op, [&]<class T>() {
    const T* score = scores.data<T>();                                    // [T, E]
    T* dscore = dscores.defined() ? dscores.data<T>() : nullptr;          // [T, E]
    std::vector<double> fraction(static_cast<std::size_t>(num_experts));  // f of the current sequence
    for (std::int64_t b = 0; b < batch.batch; ++b) {
      const std::int64_t first = b * seq_len, last = (b + 1) * seq_len;  // its tokens [first, last)
      std::fill(fraction.begin(), fraction.end(), 0.0);
      for (std::int64_t i = first * top_k; i < last * top_k; ++i) fraction[expert[i]] += count_scale;
      for (std::int64_t t = first; t < last; ++t) {
        const T* score_t = score + t * num_experts;
        double score_sum = 0.0;     // u_t
        double fraction_dot = 0.0;  // Σ_i f_i s_{i,t}
        for (std::int64_t e = 0; e < num_experts; ++e) {
          score_sum += static_cast<double>(score_t[e]);
          fraction_dot += fraction[e] * static_cast<double>(score_t[e]);
        }
        const double weighted = fraction_dot / score_sum;  // Σ_i f_i s_{i,t} / u_t
        loss += token_scale * weighted;
        if (dscore == nullptr) continue;
        for (std::int64_t e = 0; e < num_experts; ++e) {
          dscore[t * num_experts + e] = static_cast<T>(dloss * token_scale * (fraction[e] - weighted) / score_sum);
        }
      }
    }
  });
  return loss;
}

}  // namespace

double moe_forward(const Tensor& out, MoeRecord& record, const Tensor& x, const MoeWeights& w,
                   const Tensor& expert_bias, const Tensor& tokens_per_expert, const ModelArgs& args,
                   const BatchContext& batch, const MoeOptions& options) {
  const char* op = "moe_forward";
  const std::int64_t tokens = batch.tokens();
  const std::int64_t num_experts = args.n_routed_experts;
  const std::int64_t top_k = args.n_activated_experts;
  check_tokens(op, "x", x, tokens, args.dim);
  check_tokens(op, "out", out, tokens, args.dim);
  ops::expect_dtype(op, "tokens_per_expert", tokens_per_expert, DType::i64);
  ops::expect_shape(op, "tokens_per_expert", tokens_per_expert, Shape{num_experts});
  ops::expect_on_host(op, "tokens_per_expert", tokens_per_expert);
  const DType dtype = x.dtype();
  const Device device = x.device();
  const auto record_tensor = [&](Tensor& slot, const Shape& shape) -> const Tensor& {
    return ensure_tensor(slot, shape, dtype, device);
  };

  // Router.
  const ops::RouterOptions router = router_options(args);
  const Tensor logits = Tensor::empty(Shape{tokens, num_experts}, dtype, device);  // [T, E]
  ops::linear_forward(logits, x, w.gate);
  const Tensor& scores = record_tensor(record.scores, Shape{tokens, num_experts});
  const Tensor& experts = ensure_tensor(record.experts, Shape{tokens, top_k}, DType::i32, device);
  const Tensor& weights = record_tensor(record.weights, Shape{tokens, top_k});
  ops::router_forward(scores, experts, weights, logits, expert_bias, router);
  if (options.force_load_balance) route_round_robin(experts, weights, scores, router);

  // Routed experts: sort the assignments by expert, one grouped SwiGLU, the weighted sum back per token.
  record.plan = ops::make_permute_plan(experts, num_experts);
  const Tensor& routed_x = record_tensor(record.routed_x, Shape{tokens * top_k, args.dim});
  ops::permute_forward(routed_x, x, record.plan);
  const Tensor& routed_out = record_tensor(record.routed_out, Shape{tokens * top_k, args.dim});
  feed_forward_forward(routed_out, record.routed, routed_x, w.experts, record.plan.offsets);
  ops::unpermute_forward(out, routed_out, weights, record.plan);

  // Shared experts see every token, unweighted.
  if (args.n_shared_experts > 0) {
    const Tensor shared_out = Tensor::empty(out.shape(), dtype, device);  // [T, D]
    feed_forward_forward(shared_out, record.shared, x, w.shared);
    ops::add(out, out, shared_out);
  }

  count_assignments(tokens_per_expert, record.plan.offsets);  // last, so that a failed forward counts nothing
  if (options.balance_loss_coeff == 0.0) return 0.0;
  return sequence_balance_loss(scores, experts, batch, options.balance_loss_coeff, Tensor{}, 0.0);
}

void moe_backward(const Tensor& dx, const Tensor& dout, const MoeRecord& record, const Tensor& x, const MoeWeights& w,
                  const MoeWeights& grads, const ModelArgs& args, const BatchContext& batch, double dbalance,
                  const MoeOptions& options) {
  const char* op = "moe_backward";
  const std::int64_t tokens = batch.tokens();
  check_tokens(op, "x", x, tokens, args.dim);
  check_tokens(op, "dx", dx, tokens, args.dim);
  check_tokens(op, "dout", dout, tokens, args.dim);
  DSV3_CHECK(record.routed_out.defined() && record.plan.offsets.defined(),
             "{}: the record is empty; run moe_forward first", op);
  const auto scratch = [&](const Shape& shape) { return Tensor::empty(shape, x.dtype(), x.device()); };

  // Routed experts, from the weighted sum back to x: dx starts as their share.
  const Tensor d_routed_out = scratch(record.routed_out.shape());  // [T·K, D]
  const Tensor dweights = scratch(record.weights.shape());         // [T, K]
  ops::unpermute_backward(d_routed_out, dweights, dout, record.routed_out, record.weights, record.plan);
  const Tensor d_routed_x = scratch(record.routed_x.shape());  // [T·K, D]
  feed_forward_backward(d_routed_x, d_routed_out, record.routed, record.routed_x, w.experts, grads.experts,
                        record.plan.offsets);
  ops::permute_backward(dx, d_routed_x, record.plan);

  // Router: the weights' gradient, plus the balance loss's own gradient of the scores, through the gate to x.
  Tensor dscores;  // [T, E], undefined without the balance loss
  if (options.balance_loss_coeff != 0.0) {
    dscores = scratch(record.scores.shape());
    sequence_balance_loss(record.scores, record.experts, batch, options.balance_loss_coeff, dscores, dbalance);
  }
  const Tensor dlogits = scratch(record.scores.shape());  // [T, E]
  ops::router_backward(dlogits, dweights, record.scores, record.experts, router_options(args), dscores);
  const Tensor d_branch = scratch(dx.shape());  // [T, D]: one branch's share of dx
  ops::linear_backward(d_branch, grads.gate, dlogits, x, w.gate);
  ops::add(dx, dx, d_branch);

  if (args.n_shared_experts > 0) {
    feed_forward_backward(d_branch, dout, record.shared, x, w.shared, grads.shared);
    ops::add(dx, dx, d_branch);
  }
}

void update_expert_bias(const Tensor& expert_bias, const Tensor& tokens_per_expert, double coeff) {
  const char* op = "update_expert_bias";
  ops::expect_dtype(op, "expert_bias", expert_bias, DType::f32);
  ops::expect_rank(op, "expert_bias", expert_bias, 1);
  const std::int64_t num_experts = expert_bias.size(0);
  ops::expect_dtype(op, "tokens_per_expert", tokens_per_expert, DType::i64);
  ops::expect_shape(op, "tokens_per_expert", tokens_per_expert, Shape{num_experts});
  ops::expect_on_host(op, "tokens_per_expert", tokens_per_expert);
  const std::int64_t* count = tokens_per_expert.data<std::int64_t>();  // [E]

  double mean_count = 0.0;
  for (std::int64_t e = 0; e < num_experts; ++e) mean_count += static_cast<double>(count[e]);
  mean_count /= static_cast<double>(num_experts);
  // Δ = coeff · sign(mean(n) − n): underloaded experts gain, overloaded ones lose; centred so Σ bias stays put.
  std::vector<double> delta(static_cast<std::size_t>(num_experts));
  double mean_delta = 0.0;
  for (std::int64_t e = 0; e < num_experts; ++e) {
    const double n = static_cast<double>(count[e]);
    delta[e] = coeff * static_cast<double>((mean_count > n) - (mean_count < n));
    mean_delta += delta[e] / static_cast<double>(num_experts);
  }
  const Tensor step = Tensor::empty(Shape{num_experts}, DType::f32);  // f32 [E] on the host: the centred Δ
  for (std::int64_t e = 0; e < num_experts; ++e) step.data<float>()[e] = static_cast<float>(delta[e] - mean_delta);
  ops::add(expert_bias, expert_bias, expert_bias.device() == Device::cpu ? step : step.to(expert_bias.device()));
}

}  // namespace dsv3::model
