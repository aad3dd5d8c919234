#include "dsv3/ops/permute.hpp"
#include "dsv3/ops/router.hpp"

#include "backend_ops.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <vector>

using namespace dsv3;
using namespace dsv3::testing;
using namespace dsv3::testing::backend;

namespace {

struct RouterCase {
  std::int64_t tokens, experts, top_k, groups, top_groups;
  ops::RouterScore score;
  bool route_norm;
  double route_scale;
  bool bias;
};

const RouterCase kRouterCases[] = {
    {1, 4, 1, 1, 1, ops::RouterScore::softmax, false, 1.0, false},
    {37, 8, 2, 1, 1, ops::RouterScore::softmax, true, 1.0, true},
    {129, 64, 6, 8, 3, ops::RouterScore::sigmoid, true, 2.5, true},  // DeepSeek-V3's shape, scaled down
    {65, 256, 8, 8, 4, ops::RouterScore::sigmoid, true, 2.5, true},  // DeepSeek-V3's router
    {5, 33, 3, 1, 1, ops::RouterScore::sigmoid, false, 1.0, false},
    {0, 8, 2, 1, 1, ops::RouterScore::softmax, false, 1.0, false},
};

ops::RouterOptions options_of(const RouterCase& c) {
  return {.score = c.score, .top_k = c.top_k, .n_groups = c.groups, .top_groups = c.top_groups,
          .route_norm = c.route_norm, .route_scale = c.route_scale};
}

}  // namespace

TEST_CASE("backend router: forward selection and weights, backward with and without dscores") {
  Rng rng(21);
  for (const DType dtype : kDeviceFloatTypes) {
    for (const RouterCase& c : kRouterCases) {
      const ops::RouterOptions options = options_of(c);
      const Tensor logits = random_representable(Shape{c.tokens, c.experts}, dtype, rng, -3.0, 3.0);
      const Tensor bias = c.bias ? random_uniform(Shape{c.experts}, DType::f32, rng, -0.05, 0.05) : Tensor();
      const std::string where = fmt::format("{} T {} E {} K {} groups {}/{}", dtype_name(dtype), c.tokens, c.experts,
                                            c.top_k, c.top_groups, c.groups);
      const Tensor scores = Tensor::empty(logits.shape(), DType::f32);
      const Tensor experts = Tensor::empty(Shape{c.tokens, c.top_k}, DType::i32);
      const Tensor weights = Tensor::empty(Shape{c.tokens, c.top_k}, DType::f32);
      ops::router_forward(scores, experts, weights, logits, bias, options);

      const DeviceTensor device_scores = DeviceTensor::poisoned(scores.shape(), dtype);
      const DeviceTensor device_experts = DeviceTensor::poisoned(experts.shape(), DType::i32);
      const DeviceTensor device_weights = DeviceTensor::poisoned(weights.shape(), dtype);
      const Tensor device_bias = c.bias ? DeviceTensor::upload(bias).tensor() : Tensor();
      ops::router_forward(device_scores, device_experts, device_weights, DeviceTensor::upload(logits, dtype),
                          device_bias, options);
      check_output("router_forward scores " + where, device_scores, scores, nmse_threshold(dtype));
      if (dtype == DType::f32) {
        // fp32 on both sides: the same choices (random logits leave no ties within rounding).
        check_equal("router_forward experts " + where, device_experts, experts);
        check_output("router_forward weights " + where, device_weights, weights, kNmseF32);
      } else {
        // bf16 scores may reorder near-ties: at least 97% of the choices agree, and every weight is the score of
        // the expert the device chose, normalised as documented.
        const Tensor chosen = device_experts.download();
        std::int64_t same = 0;
        for (std::int64_t i = 0; i < experts.numel(); ++i) same += value_at(chosen, i) == value_at(experts, i);
        CHECK(same >= experts.numel() * 97 / 100);
        const Tensor expected_weights = Tensor::empty(weights.shape(), DType::f32);
        for (std::int64_t t = 0; t < c.tokens; ++t) {
          double sum = 0.0;
          for (std::int64_t k = 0; k < c.top_k; ++k) sum += value_at(scores, t * c.experts + value_at(chosen, t * c.top_k + k));
          for (std::int64_t k = 0; k < c.top_k; ++k) {
            const double s = value_at(scores, t * c.experts + value_at(chosen, t * c.top_k + k));
            expected_weights.data<float>()[t * c.top_k + k] =
                static_cast<float>((c.route_norm ? s / (sum + 1e-20) : s) * c.route_scale);
          }
        }
        check_output("router_forward weights " + where, device_weights, expected_weights, nmse_threshold(dtype));
      }
      device_experts.check_guard("router_forward experts " + where);

      // Backward from the CPU's selection, so both sides differentiate the same choice.
      const Tensor dweights = random_representable(weights.shape(), dtype, rng);
      const Tensor dscores = random_representable(scores.shape(), dtype, rng);
      const Tensor scores_in = representable(scores, dtype);
      for (const bool direct : {false, true}) {
        const Tensor dlogits = Tensor::empty(scores.shape(), DType::f32);
        ops::router_backward(dlogits, dweights, scores_in, experts, options, direct ? dscores : Tensor());
        const DeviceTensor device_dlogits = DeviceTensor::poisoned(scores.shape(), dtype);
        const DeviceTensor device_dscores = DeviceTensor::upload(dscores, dtype);
        ops::router_backward(device_dlogits, DeviceTensor::upload(dweights, dtype),
                             DeviceTensor::upload(scores_in, dtype), DeviceTensor::upload(experts), options,
                             direct ? device_dscores.tensor() : Tensor());
        check_output(fmt::format("router_backward {} dscores {}", where, direct), device_dlogits, dlogits,
                     nmse_threshold(dtype));
      }
    }
  }
}

TEST_CASE("backend permute: plans from device experts, gathers and their backward, empty experts") {
  Rng rng(22);
  for (const DType dtype : kDeviceFloatTypes) {
    for (const auto& [tokens, top_k, num_experts, features] :
         std::vector<std::array<std::int64_t, 4>>{{1, 1, 1, 1}, {19, 3, 7, 33}, {128, 6, 64, 256}, {0, 2, 4, 8}}) {
      // Experts drawn from the first half only: the rest stay empty.
      const Tensor experts = random_uniform(Shape{tokens, top_k}, DType::i32, rng, 0,
                                            static_cast<double>(std::max<std::int64_t>(1, num_experts / 2)));
      const std::string where = fmt::format("{} T {} K {} E {} D {}", dtype_name(dtype), tokens, top_k, num_experts,
                                            features);
      const ops::PermutePlan plan = ops::make_permute_plan(experts, num_experts);
      const ops::PermutePlan device_plan = ops::make_permute_plan(DeviceTensor::upload(experts), num_experts);
      REQUIRE(device_plan.source_rows.device() == Device::cuda);
      REQUIRE(device_plan.offsets.device() == Device::cpu);
      CHECK(to_vector(device_plan.offsets) == to_vector(plan.offsets));
      CHECK(to_vector(device_plan.source_rows.to(Device::cpu)) == to_vector(plan.source_rows));
      CHECK(to_vector(device_plan.slot_rows.to(Device::cpu)) == to_vector(plan.slot_rows));

      const std::int64_t rows = tokens * top_k;
      const Tensor x = random_representable(Shape{tokens, features}, dtype, rng);
      const Tensor dy_rows = random_representable(Shape{rows, features}, dtype, rng);
      const Tensor expert_out = random_representable(Shape{rows, features}, dtype, rng);
      const Tensor weights = random_representable(Shape{tokens, top_k}, dtype, rng);
      const Tensor dy_tokens = random_representable(Shape{tokens, features}, dtype, rng);

      const Tensor y = Tensor::empty(Shape{rows, features}, DType::f32);
      ops::permute_forward(y, x, plan);
      const DeviceTensor device_y = DeviceTensor::poisoned(y.shape(), dtype);
      ops::permute_forward(device_y, DeviceTensor::upload(x, dtype), device_plan);
      check_output("permute_forward " + where, device_y, y, 0.0);  // a copy: exact

      const Tensor dx = Tensor::empty(x.shape(), DType::f32);
      ops::permute_backward(dx, dy_rows, plan);
      const DeviceTensor device_dx = DeviceTensor::poisoned(x.shape(), dtype);
      ops::permute_backward(device_dx, DeviceTensor::upload(dy_rows, dtype), device_plan);
      check_output("permute_backward " + where, device_dx, dx, nmse_threshold(dtype));

      const Tensor combined = Tensor::empty(x.shape(), DType::f32);
      ops::unpermute_forward(combined, expert_out, weights, plan);
      const DeviceTensor device_combined = DeviceTensor::poisoned(x.shape(), dtype);
      ops::unpermute_forward(device_combined, DeviceTensor::upload(expert_out, dtype),
                             DeviceTensor::upload(weights, dtype), device_plan);
      check_output("unpermute_forward " + where, device_combined, combined, nmse_threshold(dtype));

      const Tensor dexpert_out = Tensor::empty(expert_out.shape(), DType::f32);
      const Tensor dweights = Tensor::empty(weights.shape(), DType::f32);
      ops::unpermute_backward(dexpert_out, dweights, dy_tokens, expert_out, weights, plan);
      const DeviceTensor device_dexpert_out = DeviceTensor::poisoned(expert_out.shape(), dtype);
      const DeviceTensor device_dweights = DeviceTensor::poisoned(weights.shape(), dtype);
      ops::unpermute_backward(device_dexpert_out, device_dweights, DeviceTensor::upload(dy_tokens, dtype),
                              DeviceTensor::upload(expert_out, dtype), DeviceTensor::upload(weights, dtype),
                              device_plan);
      check_output("unpermute_backward dexpert_out " + where, device_dexpert_out, dexpert_out, nmse_threshold(dtype));
      check_output("unpermute_backward dweights " + where, device_dweights, dweights, nmse_threshold(dtype));
    }
  }
}
