#include "dsv3/ops/permute.hpp"

#include "dsv3/ops/cpu/permute.hpp"
#include "dsv3/ops/cuda/routing.hpp"
#include "dsv3/ops/cuda_dispatch.hpp"

#include <array>
#include <limits>

namespace dsv3::ops {

namespace {

// The row maps of a plan for `tokens` tokens; returns its number of sorted rows T·K.
std::int64_t check_plan(const char* op, const PermutePlan& plan, std::int64_t tokens) {
  expect_dtype(op, "plan.slot_rows", plan.slot_rows, DType::i32);
  expect_rank(op, "plan.slot_rows", plan.slot_rows, 2);
  DSV3_CHECK(plan.slot_rows.size(0) == tokens, "{}: plan.slot_rows is {}, a plan for {} tokens expected", op,
             plan.slot_rows.describe(), tokens);
  const std::int64_t rows = plan.slot_rows.numel();
  expect_dtype(op, "plan.source_rows", plan.source_rows, DType::i32);
  expect_shape(op, "plan.source_rows", plan.source_rows, Shape{rows});
  return rows;
}

// A [T, D] token tensor: returns it as its (T, D).
std::array<std::int64_t, 2> check_tokens(const char* op, const char* name, const Tensor& tensor) {
  expect_float(op, name, tensor);
  expect_rank(op, name, tensor, 2);
  return {tensor.size(0), tensor.size(1)};
}

}  // namespace

PermutePlan make_permute_plan(const Tensor& experts, std::int64_t num_experts) {
  const char* op = "make_permute_plan";
  expect_dtype(op, "experts", experts, DType::i32);
  expect_rank(op, "experts", experts, 2);
  DSV3_CHECK(num_experts >= 1, "{}: num_experts is {}, expected at least 1", op, num_experts);
  DSV3_CHECK(experts.numel() <= std::numeric_limits<std::int32_t>::max(),
             "{}: experts {} has more assignments than the i32 rows of a plan can address", op, experts.describe());
  if (experts.device() == Device::cpu) return cpu::make_permute_plan(experts, num_experts);
  // The grouped GEMM needs the row counts on the host, so the plan is made there (a T·K counting sort) and its
  // row maps copied back: one synchronisation per MoE layer and direction, as in torchtitan.
  PermutePlan plan = cpu::make_permute_plan(experts.to(Device::cpu), num_experts);
  plan.source_rows = plan.source_rows.to(experts.device());
  plan.slot_rows = plan.slot_rows.to(experts.device());
  return plan;
}

void permute_forward(const Tensor& y, const Tensor& x, const PermutePlan& plan, Stream stream) {
  const char* op = "permute_forward";
  const auto [tokens, features] = check_tokens(op, "x", x);
  const std::int64_t rows = check_plan(op, plan, tokens);
  expect_shape(op, "y", y, Shape{rows, features});
  expect_same_dtype(op, {&x, &y});
  expect_same_device(op, {&x, &y, &plan.source_rows, &plan.slot_rows});
  if (x.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::permute_forward(y.raw(), x.raw(), plan.source_rows.data<std::int32_t>(),
                                                  cuda_float(op, "x", x), rows, features, stream.handle));
  }
  cpu::permute_forward(y, x, plan);
}

void permute_backward(const Tensor& dx, const Tensor& dy, const PermutePlan& plan, Stream stream) {
  const char* op = "permute_backward";
  const auto [tokens, features] = check_tokens(op, "dx", dx);
  const std::int64_t rows = check_plan(op, plan, tokens);
  expect_shape(op, "dy", dy, Shape{rows, features});
  expect_same_dtype(op, {&dx, &dy});
  expect_same_device(op, {&dx, &dy, &plan.source_rows, &plan.slot_rows});
  if (dx.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::permute_backward(dx.raw(), dy.raw(), plan.slot_rows.data<std::int32_t>(),
                                                   cuda_float(op, "dx", dx), tokens, plan.slot_rows.size(1),
                                                   features, stream.handle));
  }
  cpu::permute_backward(dx, dy, plan);
}

void unpermute_forward(const Tensor& y, const Tensor& expert_out, const Tensor& weights, const PermutePlan& plan,
                       Stream stream) {
  const char* op = "unpermute_forward";
  const auto [tokens, features] = check_tokens(op, "y", y);
  const std::int64_t rows = check_plan(op, plan, tokens);
  expect_shape(op, "expert_out", expert_out, Shape{rows, features});
  expect_shape(op, "weights", weights, plan.slot_rows.shape());
  expect_same_dtype(op, {&y, &expert_out, &weights});
  expect_same_device(op, {&y, &expert_out, &weights, &plan.source_rows, &plan.slot_rows});
  if (y.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::unpermute_forward(y.raw(), expert_out.raw(), weights.raw(),
                                                    plan.slot_rows.data<std::int32_t>(), cuda_float(op, "y", y),
                                                    tokens, plan.slot_rows.size(1), features, stream.handle));
  }
  cpu::unpermute_forward(y, expert_out, weights, plan);
}

void unpermute_backward(const Tensor& dexpert_out, const Tensor& dweights, const Tensor& dy,
                        const Tensor& expert_out, const Tensor& weights, const PermutePlan& plan, Stream stream) {
  const char* op = "unpermute_backward";
  const auto [tokens, features] = check_tokens(op, "dy", dy);
  const std::int64_t rows = check_plan(op, plan, tokens);
  expect_shape(op, "expert_out", expert_out, Shape{rows, features});
  expect_shape(op, "dexpert_out", dexpert_out, Shape{rows, features});
  expect_shape(op, "weights", weights, plan.slot_rows.shape());
  expect_shape(op, "dweights", dweights, plan.slot_rows.shape());
  expect_same_dtype(op, {&dy, &expert_out, &dexpert_out, &weights, &dweights});
  expect_same_device(op, {&dy, &expert_out, &dexpert_out, &weights, &dweights, &plan.source_rows, &plan.slot_rows});
  if (dy.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::unpermute_backward(dexpert_out.raw(), dweights.raw(), dy.raw(), expert_out.raw(),
                                                     weights.raw(), plan.slot_rows.data<std::int32_t>(),
                                                     cuda_float(op, "dy", dy), tokens, plan.slot_rows.size(1),
                                                     features, stream.handle));
  }
  cpu::unpermute_backward(dexpert_out, dweights, dy, expert_out, weights, plan);
}

}  // namespace dsv3::ops
