#include "dsv3/ops/permute.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>

using namespace dsv3;
using namespace dsv3::testing;

namespace {

struct NaivePlan {
  std::vector<double> source_rows;  // [T·K]
  std::vector<double> slot_rows;    // [T·K]
  std::vector<double> offsets;      // [E + 1]
};

// The plan by its definition: the assignments i = t·K + k stably sorted by expert; offsets from the counts.
NaivePlan naive_plan(const Tensor& experts, std::int64_t num_experts) {
  const std::int64_t top_k = experts.size(1), assignments = experts.numel();
  std::vector<std::int64_t> order(assignments);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::int64_t a, std::int64_t b) { return value_at(experts, a) < value_at(experts, b); });
  NaivePlan plan{.source_rows = std::vector<double>(assignments),
                 .slot_rows = std::vector<double>(assignments),
                 .offsets = std::vector<double>(num_experts + 1, 0.0)};
  for (std::int64_t row = 0; row < assignments; ++row) {
    plan.source_rows[row] = static_cast<double>(order[row] / top_k);
    plan.slot_rows[order[row]] = static_cast<double>(row);
  }
  for (std::int64_t i = 0; i < assignments; ++i) {
    for (std::int64_t e = static_cast<std::int64_t>(value_at(experts, i)) + 1; e <= num_experts; ++e) {
      plan.offsets[e] += 1.0;
    }
  }
  return plan;
}

Tensor permuted(const Tensor& x, const ops::PermutePlan& plan) {
  Tensor y = Tensor::empty(Shape{plan.source_rows.size(0), x.size(1)}, x.dtype());
  ops::permute_forward(y, x, plan);
  return y;
}

Tensor unpermuted(const Tensor& expert_out, const Tensor& weights, const ops::PermutePlan& plan) {
  Tensor y = Tensor::empty(Shape{weights.size(0), expert_out.size(1)}, expert_out.dtype());
  ops::unpermute_forward(y, expert_out, weights, plan);
  return y;
}

struct PermuteCase {
  std::int64_t tokens, top_k, num_experts, used_experts;  // expert ids drawn from [0, used_experts)
};

}  // namespace

TEST_CASE("make_permute_plan matches a stable sort by expert, empty experts and odd sizes included") {
  Rng rng(21);
  const PermuteCase cases[] = {{7, 3, 10, 6}, {1, 1, 4, 4}, {33, 6, 16, 16}, {5, 8, 64, 64}, {0, 2, 3, 3},
                               {11, 1, 3, 1}};
  for (const PermuteCase& c : cases) {
    CAPTURE(c.tokens);
    CAPTURE(c.top_k);
    CAPTURE(c.num_experts);
    const Tensor experts = random_uniform(Shape{c.tokens, c.top_k}, DType::i32, rng, 0, c.used_experts);
    const ops::PermutePlan plan = ops::make_permute_plan(experts, c.num_experts);
    const NaivePlan expected = naive_plan(experts, c.num_experts);
    CHECK(to_vector(plan.source_rows) == expected.source_rows);
    CHECK(to_vector(plan.slot_rows) == expected.slot_rows);
    CHECK(to_vector(plan.offsets) == expected.offsets);
    CHECK(plan.slot_rows.shape() == experts.shape());
    CHECK(plan.offsets.dtype() == DType::i64);
    // slot_rows inverts source_rows, and each assignment lands in its expert's block.
    for (std::int64_t i = 0; i < experts.numel(); ++i) {
      const auto row = static_cast<std::int64_t>(value_at(plan.slot_rows, i));
      const auto expert = static_cast<std::int64_t>(value_at(experts, i));
      CHECK(value_at(plan.source_rows, row) == static_cast<double>(i / c.top_k));
      CHECK(value_at(plan.offsets, expert) <= static_cast<double>(row));
      CHECK(static_cast<double>(row) < value_at(plan.offsets, expert + 1));
    }
  }
}

TEST_CASE("permute_forward and unpermute_forward match naive gathers in f64 and f32") {
  Rng rng(22);
  const std::int64_t tokens = 9, top_k = 3, features = 5, num_experts = 7;
  const Tensor experts = random_uniform(Shape{tokens, top_k}, DType::i32, rng, 0, num_experts);
  const ops::PermutePlan plan = ops::make_permute_plan(experts, num_experts);
  const NaivePlan naive = naive_plan(experts, num_experts);
  const Tensor x = random_uniform(Shape{tokens, features}, DType::f64, rng);
  const Tensor expert_out = random_uniform(Shape{tokens * top_k, features}, DType::f64, rng);
  const Tensor weights = random_uniform(Shape{tokens, top_k}, DType::f64, rng);

  std::vector<double> gathered;
  for (double token : naive.source_rows) {
    const auto t = static_cast<std::int64_t>(token);
    for (std::int64_t j = 0; j < features; ++j) gathered.push_back(value_at(x, t * features + j));
  }
  std::vector<double> combined(tokens * features, 0.0);
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (std::int64_t k = 0; k < top_k; ++k) {
      const auto row = static_cast<std::int64_t>(naive.slot_rows[t * top_k + k]);
      for (std::int64_t j = 0; j < features; ++j) {
        combined[t * features + j] += value_at(weights, t * top_k + k) * value_at(expert_out, row * features + j);
      }
    }
  }
  const Tensor expected_permuted = from_values(Shape{tokens * top_k, features}, DType::f64, gathered);
  const Tensor expected_unpermuted = from_values(Shape{tokens, features}, DType::f64, combined);
  DSV3_CHECK_CLOSE(compare(permuted(x, plan), expected_permuted, 0, 0));
  DSV3_CHECK_CLOSE(compare(unpermuted(expert_out, weights, plan), expected_unpermuted, 1e-14, 1e-14));

  const auto as_f32 = [](const Tensor& t) { return from_values(t.shape(), DType::f32, to_vector(t)); };
  DSV3_CHECK_CLOSE(compare(permuted(as_f32(x), plan), expected_permuted, 1e-7, 0));
  DSV3_CHECK_CLOSE(compare(unpermuted(as_f32(expert_out), as_f32(weights), plan), expected_unpermuted, 1e-5, 1e-6));
}

TEST_CASE("permute_backward and unpermute_backward: f64 gradient checks, outputs overwritten") {
  Rng rng(23);
  const std::int64_t tokens = 7, top_k = 3, features = 4, num_experts = 5;
  const Tensor experts = random_uniform(Shape{tokens, top_k}, DType::i32, rng, 0, num_experts);
  const ops::PermutePlan plan = ops::make_permute_plan(experts, num_experts);

  const Tensor x = random_uniform(Shape{tokens, features}, DType::f64, rng);
  const Tensor dy_permuted = random_uniform(Shape{tokens * top_k, features}, DType::f64, rng);
  const Tensor dx = random_uniform(x.shape(), DType::f64, rng);  // garbage to be overwritten
  ops::permute_backward(dx, dy_permuted, plan);
  DSV3_CHECK_CLOSE(check_gradients([&] { return permuted(x, plan); }, dy_permuted, {x}, {dx}));

  const Tensor expert_out = random_uniform(Shape{tokens * top_k, features}, DType::f64, rng);
  const Tensor weights = random_uniform(Shape{tokens, top_k}, DType::f64, rng);
  const Tensor dy = random_uniform(Shape{tokens, features}, DType::f64, rng);
  const Tensor dexpert_out = random_uniform(expert_out.shape(), DType::f64, rng);
  const Tensor dweights = random_uniform(weights.shape(), DType::f64, rng);
  ops::unpermute_backward(dexpert_out, dweights, dy, expert_out, weights, plan);
  DSV3_CHECK_CLOSE(check_gradients([&] { return unpermuted(expert_out, weights, plan); }, dy, {expert_out, weights},
                                   {dexpert_out, dweights}));
}

TEST_CASE("permute then unpermute gives the tokens back") {
  Rng rng(24);
  const std::int64_t tokens = 13, features = 6, num_experts = 4;
  const Tensor x = random_uniform(Shape{tokens, features}, DType::f32, rng);
  SUBCASE("K = 1, weights 1: exactly") {
    const ops::PermutePlan plan =
        ops::make_permute_plan(random_uniform(Shape{tokens, 1}, DType::i32, rng, 0, num_experts), num_experts);
    const Tensor ones = from_values(Shape{tokens, 1}, DType::f32, std::vector<double>(tokens, 1.0));
    DSV3_CHECK_CLOSE(compare(unpermuted(permuted(x, plan), ones, plan), x, 0, 0));
  }
  SUBCASE("K = 3, weights summing to 1, every expert the identity") {
    const std::int64_t top_k = 3;
    const ops::PermutePlan plan =
        ops::make_permute_plan(random_uniform(Shape{tokens, top_k}, DType::i32, rng, 0, num_experts), num_experts);
    std::vector<double> weights = to_vector(random_uniform(Shape{tokens, top_k}, DType::f64, rng, 0.1, 1.0));
    for (std::int64_t t = 0; t < tokens; ++t) {
      const double sum = weights[t * top_k] + weights[t * top_k + 1] + weights[t * top_k + 2];
      for (std::int64_t k = 0; k < top_k; ++k) weights[t * top_k + k] /= sum;
    }
    const Tensor normalised = from_values(Shape{tokens, top_k}, DType::f32, weights);
    DSV3_CHECK_CLOSE(compare(unpermuted(permuted(x, plan), normalised, plan), x, 1e-6, 1e-6));
  }
}

TEST_CASE("permute ops reject bad expert ids, plans and shapes, naming the op and the value") {
  const Tensor experts = from_values(Shape{2, 2}, DType::i32, {0, 1, 5, 2});
  CHECK_THROWS_WITH_AS(ops::make_permute_plan(experts, 4),
                       doctest::Contains("make_permute_plan: experts[1, 0] is 5, expected an expert id in [0, 4)"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::make_permute_plan(from_values(Shape{1, 2}, DType::i32, {0, -1}), 4),
                       doctest::Contains("make_permute_plan: experts[0, 1] is -1"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::make_permute_plan(experts, 0),
                       doctest::Contains("make_permute_plan: num_experts is 0, expected at least 1"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::make_permute_plan(Tensor::zeros(Shape{2, 2}, DType::i64), 4),
                       doctest::Contains("make_permute_plan: experts is i64[2, 2]@cpu, expected dtype i32"),
                       dsv3::Error);

  // Two tokens with K = 2 (four sorted rows) and three features.
  const ops::PermutePlan plan = ops::make_permute_plan(Tensor::zeros(Shape{2, 2}, DType::i32), 4);
  const auto f32 = [](std::int64_t rows, std::int64_t columns) {
    return Tensor::zeros(Shape{rows, columns}, DType::f32);
  };
  const Tensor x = f32(2, 3), sorted = f32(4, 3), weights = f32(2, 2);
  CHECK_THROWS_WITH_AS(ops::permute_forward(f32(5, 3), x, plan),
                       doctest::Contains("permute_forward: y is f32[5, 3]@cpu, expected shape [4, 3]"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::permute_forward(Tensor::zeros(Shape{4, 3}, DType::f64), x, plan),
                       doctest::Contains("permute_forward: tensors of different dtypes"), dsv3::Error);
  CHECK_THROWS_WITH_AS(
      ops::permute_backward(f32(3, 3), sorted, plan),
      doctest::Contains("permute_backward: plan.slot_rows is i32[2, 2]@cpu, a plan for 3 tokens expected"),
      dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::unpermute_forward(x, sorted, f32(2, 3), plan),
                       doctest::Contains("unpermute_forward: weights is f32[2, 3]@cpu, expected shape [2, 2]"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::unpermute_backward(sorted, weights, x, f32(4, 2), weights, plan),
                       doctest::Contains("unpermute_backward: expert_out is f32[4, 2]@cpu, expected shape [4, 3]"),
                       dsv3::Error);
}
