#include "dsv3/ops/router.hpp"

#include "dsv3/ops/cpu/router.hpp"
#include "dsv3/ops/cuda/routing.hpp"
#include "dsv3/ops/cuda_dispatch.hpp"

namespace dsv3::ops {

namespace {

void check_options(const char* op, const RouterOptions& options, std::int64_t num_experts) {
  DSV3_CHECK(options.top_k >= 1 && options.top_k <= num_experts,
             "{}: top_k is {}, expected 1 to {} (the number of experts)", op, options.top_k, num_experts);
  DSV3_CHECK(options.n_groups >= 1 && num_experts % options.n_groups == 0,
             "{}: n_groups is {}, expected a divisor of the {} experts", op, options.n_groups, num_experts);
  DSV3_CHECK(options.top_groups >= 1 && options.top_groups <= options.n_groups,
             "{}: top_groups is {}, expected 1 to n_groups ({})", op, options.top_groups, options.n_groups);
  const std::int64_t kept_experts = options.top_groups * (num_experts / options.n_groups);
  DSV3_CHECK(options.top_k <= kept_experts, "{}: top_k is {}, but the {} kept of {} groups hold only {} experts", op,
             options.top_k, options.top_groups, options.n_groups, kept_experts);
}

[[maybe_unused]] cuda::RouterShape cuda_router_shape(const RouterOptions& options, std::int64_t tokens,
                                                     std::int64_t num_experts) {
  cuda::RouterShape shape;
  shape.tokens = tokens;
  shape.experts = num_experts;
  shape.top_k = options.top_k;
  shape.groups = options.n_groups;
  shape.top_groups = options.top_groups;
  shape.sigmoid = options.score == RouterScore::sigmoid;
  shape.route_norm = options.route_norm;
  shape.route_scale = options.route_scale;
  return shape;
}

}  // namespace

void router_forward(const Tensor& scores, const Tensor& experts, const Tensor& weights, const Tensor& logits,
                    const Tensor& expert_bias, const RouterOptions& options, Stream stream) {
  const char* op = "router_forward";
  expect_float(op, "logits", logits);
  expect_rank(op, "logits", logits, 2);
  const std::int64_t tokens = logits.size(0);
  const std::int64_t num_experts = logits.size(1);
  check_options(op, options, num_experts);
  expect_shape(op, "scores", scores, Shape{tokens, num_experts});
  expect_shape(op, "experts", experts, Shape{tokens, options.top_k});
  expect_dtype(op, "experts", experts, DType::i32);
  expect_shape(op, "weights", weights, Shape{tokens, options.top_k});
  expect_same_dtype(op, {&logits, &scores, &weights});
  if (expert_bias.defined()) {
    // f32 whatever the compute dtype: the bias is trainer state, updated outside the optimizer.
    expect_dtype(op, "expert_bias", expert_bias, DType::f32);
    expect_shape(op, "expert_bias", expert_bias, Shape{num_experts});
  }
  expect_same_device(op, {&logits, &scores, &experts, &weights, &expert_bias});
  if (logits.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::router_forward(scores.raw(), experts.data<std::int32_t>(), weights.raw(),
                                                 logits.raw(),
                                                 expert_bias.defined() ? expert_bias.data<float>() : nullptr,
                                                 cuda_float(op, "logits", logits),
                                                 cuda_router_shape(options, tokens, num_experts), stream.handle));
  }
  cpu::router_forward(scores, experts, weights, logits, expert_bias, options);
}

void router_backward(const Tensor& dlogits, const Tensor& dweights, const Tensor& scores, const Tensor& experts,
                     const RouterOptions& options, const Tensor& dscores, Stream stream) {
  const char* op = "router_backward";
  expect_float(op, "scores", scores);
  expect_rank(op, "scores", scores, 2);
  const std::int64_t tokens = scores.size(0);
  const std::int64_t num_experts = scores.size(1);
  check_options(op, options, num_experts);
  expect_shape(op, "dlogits", dlogits, scores.shape());
  expect_shape(op, "experts", experts, Shape{tokens, options.top_k});
  expect_dtype(op, "experts", experts, DType::i32);
  expect_shape(op, "dweights", dweights, Shape{tokens, options.top_k});
  if (dscores.defined()) expect_shape(op, "dscores", dscores, scores.shape());
  expect_same_dtype(op, {&scores, &dlogits, &dweights, &dscores});
  expect_same_device(op, {&scores, &dlogits, &dweights, &experts, &dscores});
  if (scores.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::router_backward(dlogits.raw(), dweights.raw(), scores.raw(),
                                                  experts.data<std::int32_t>(), device_pointer(dscores),
                                                  cuda_float(op, "scores", scores),
                                                  cuda_router_shape(options, tokens, num_experts), stream.handle));
  }
  cpu::router_backward(dlogits, dweights, scores, experts, options, dscores);
}

}  // namespace dsv3::ops
