#include "dsv3/model/model_args.hpp"
#include "dsv3/model/parameters.hpp"
#include "dsv3/model/weights.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

#include <cmath>

using namespace dsv3;
using namespace dsv3::model;

TEST_CASE("parameter counts of every flavor match REFERENCE.md §1") {
  struct Expected {
    const char* flavor;
    double total;
    double active;
    double tolerance;  // REFERENCE.md rounds to the digits given
  };
  for (const Expected& e : {Expected{"debugmodel", 33.0e6, 28.1e6, 0.05e6}, {"debugmodel_flex_attn", 33.0e6, 28.1e6, 0.05e6},
                            {"16B", 15.71e9, 2.66e9, 0.005e9}, {"236B", 235.7e9, 21.4e9, 0.05e9},
                            {"671B", 671.0e9, 37.6e9, 0.05e9}}) {
    CAPTURE(e.flavor);
    const ModelArgs args = model_flavor(e.flavor);
    validate(args);
    const ParameterCounts counts = count_parameters(args);
    CHECK(std::fabs(static_cast<double>(counts.total) - e.total) <= e.tolerance);
    CHECK(std::fabs(static_cast<double>(counts.active) - e.active) <= e.tolerance);
  }
  CHECK(count_parameters(model_flavor("debugmodel")).total == 33'014'016);
}

TEST_CASE("the parameter specs add up to the counted parameters, with REFERENCE.md's names and shapes") {
  for (const std::string& flavor : {std::string("debugmodel"), std::string("236B"), std::string("671B")}) {
    const ModelArgs args = model_flavor(flavor);
    std::int64_t total = 0;
    for (const ParameterSpec& spec : parameter_specs(args)) total += spec.shape.numel();
    CHECK(total == count_parameters(args).total);
  }
  const auto specs = parameter_specs(model_flavor("671B"));
  const auto find = [&](const std::string& name) {
    for (const auto& spec : specs) {
      if (spec.name == name) return spec.shape;
    }
    FAIL("no parameter " << name);
    return Shape{};
  };
  CHECK(find("layers.3.moe.experts.w1") == Shape{256, 2048, 7168});
  CHECK(find("layers.3.moe.shared_experts.w2") == Shape{7168, 2048});
  CHECK(find("layers.0.feed_forward.w3") == Shape{18432, 7168});
  CHECK(find("layers.60.attention.wq_b") == Shape{128 * 192, 1536});
  CHECK(find("layers.0.attention.wkv_a") == Shape{576, 7168});
  CHECK(find("layers.0.attention.wkv_b") == Shape{128 * 256, 512});
  CHECK(find("output") == Shape{129280, 7168});
}

TEST_CASE("softmax scale with YaRN and the 671B value of REFERENCE.md") {
  CHECK(std::fabs(model_flavor("671B").softmax_scale() - 0.1352338) < 1e-7);
  ModelArgs args = model_flavor("debugmodel");
  args.yarn = false;
  CHECK(args.softmax_scale() == doctest::Approx(1.0 / std::sqrt(192.0)));
}

TEST_CASE("invalid model args are rejected with the key named") {
  ModelArgs args = model_flavor("debugmodel");
  args.n_activated_experts = 9;
  CHECK_THROWS_WITH_AS(validate(args), doctest::Contains("model.n_activated_experts = 9"), Error);
  args = model_flavor("debugmodel");
  args.n_expert_groups = 3;
  CHECK_THROWS_WITH_AS(validate(args), doctest::Contains("model.n_expert_groups = 3 must divide"), Error);
  args = model_flavor("debugmodel");
  args.qk_rope_head_dim = 63;
  CHECK_THROWS_WITH_AS(validate(args), doctest::Contains("qk_rope_head_dim = 63"), Error);
  CHECK_THROWS_WITH_AS(model_flavor("1T"), doctest::Contains("'1T' is not a known flavor"), Error);
}

TEST_CASE("parameter store: initialisation follows the specs and does not depend on their order") {
  const ModelArgs args = model_flavor("debugmodel");
  ParameterStore store(parameter_specs(args), DType::f32);
  store.initialize(42);
  const auto values = [&](const std::string& name) { return testing::to_vector(store.param(name)); };
  for (double v : values("layers.2.ffn_norm")) CHECK(v == 1.0);
  const auto wq = values("layers.0.attention.wq");
  double sum_squares = 0.0, largest = 0.0;
  for (double v : wq) {
    sum_squares += v * v;
    largest = std::max(largest, std::fabs(v));
  }
  CHECK(largest <= 2.0);
  // truncation at ±2 (100 σ) leaves the 0.02 standard deviation
  CHECK(std::sqrt(sum_squares / static_cast<double>(wq.size())) == doctest::Approx(0.02).epsilon(0.01));
  const auto wo = values("layers.3.attention.wo");
  double wo_squares = 0.0;
  for (double v : wo) wo_squares += v * v;
  CHECK(std::sqrt(wo_squares / static_cast<double>(wo.size())) == doctest::Approx(0.02 / std::sqrt(8.0)).epsilon(0.02));

  auto reversed = parameter_specs(args);
  std::reverse(reversed.begin(), reversed.end());
  ParameterStore other(reversed, DType::f32);
  other.initialize(42);
  DSV3_CHECK_CLOSE(testing::compare(other.param("layers.4.moe.experts.w2"), store.param("layers.4.moe.experts.w2"), 0, 0));

  const ModelWeights grads = bind_weights(args, [&](const std::string& name) { return store.grad(name); });
  CHECK(grads.layers.size() == 6);
  CHECK_FALSE(grads.layers[0].moe_layer);
  CHECK(grads.layers[1].moe.experts.w1.shape() == Shape{8, 256, 256});
  CHECK(grads.layers[1].moe.shared.w1.shape() == Shape{512, 256});
  CHECK(grads.layers[1].moe.experts.w1.shares_storage_with(store.flat_grads()));
}
