#include "dsv3/ops/router.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

using namespace dsv3;
using namespace dsv3::testing;

namespace {

struct Routing {
  Tensor scores;   // [T, E]
  Tensor experts;  // i32 [T, K]
  Tensor weights;  // [T, K]
};

Routing run_router(const Tensor& logits, const Tensor& bias, const ops::RouterOptions& options) {
  const std::int64_t tokens = logits.size(0), num_experts = logits.size(1);
  Routing routing{.scores = Tensor::empty(Shape{tokens, num_experts}, logits.dtype()),
                  .experts = Tensor::empty(Shape{tokens, options.top_k}, DType::i32),
                  .weights = Tensor::empty(Shape{tokens, options.top_k}, logits.dtype())};
  ops::router_forward(routing.scores, routing.experts, routing.weights, logits, bias, options);
  return routing;
}

// The router by its definition, token by token in the compute type Real: scores, a biased copy, group scores
// from a sorted copy of each group, the losing groups masked with −inf, then a stable sort of all experts.
template <class Real>
Routing naive_router(const Tensor& logits, const Tensor& bias, const ops::RouterOptions& options) {
  const std::int64_t tokens = logits.size(0), num_experts = logits.size(1), top_k = options.top_k;
  const std::int64_t group_size = num_experts / options.n_groups;
  std::vector<double> all_scores, all_experts, all_weights;
  for (std::int64_t t = 0; t < tokens; ++t) {
    std::vector<Real> score(num_experts);
    for (std::int64_t e = 0; e < num_experts; ++e) score[e] = static_cast<Real>(value_at(logits, t * num_experts + e));
    if (options.score == ops::RouterScore::sigmoid) {
      for (Real& s : score) s = Real{1} / (Real{1} + std::exp(-s));
    } else {
      const Real max_logit = *std::max_element(score.begin(), score.end());
      Real sum = 0;
      for (Real& s : score) s = std::exp(s - max_logit);
      for (Real s : score) sum += s;
      for (Real& s : score) s /= sum;
    }
    std::vector<Real> biased(score);
    if (bias.defined()) {
      for (std::int64_t e = 0; e < num_experts; ++e) biased[e] += static_cast<Real>(bias.data<float>()[e]);
    }
    if (options.n_groups > 1) {
      std::vector<Real> group_score(options.n_groups);
      for (std::int64_t g = 0; g < options.n_groups; ++g) {
        std::vector<Real> members(biased.begin() + g * group_size, biased.begin() + (g + 1) * group_size);
        std::sort(members.begin(), members.end(), std::greater<>());
        group_score[g] = members[0] + (group_size > 1 ? members[1] : Real{0});
      }
      std::vector<std::int64_t> group_order(options.n_groups);
      std::iota(group_order.begin(), group_order.end(), 0);
      std::stable_sort(group_order.begin(), group_order.end(),
                       [&](std::int64_t a, std::int64_t b) { return group_score[a] > group_score[b]; });
      for (std::int64_t rank = options.top_groups; rank < options.n_groups; ++rank) {
        std::fill_n(biased.begin() + group_order[rank] * group_size, group_size,
                    -std::numeric_limits<Real>::infinity());
      }
    }
    std::vector<std::int64_t> order(num_experts);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) { return biased[a] > biased[b]; });
    Real chosen_sum = 0;
    for (std::int64_t k = 0; k < top_k; ++k) chosen_sum += score[order[k]];
    for (std::int64_t k = 0; k < top_k; ++k) {
      Real weight = score[order[k]];
      if (options.route_norm) weight /= chosen_sum + static_cast<Real>(1e-20);
      weight *= static_cast<Real>(options.route_scale);
      all_experts.push_back(static_cast<double>(order[k]));
      all_weights.push_back(weight);
    }
    all_scores.insert(all_scores.end(), score.begin(), score.end());
  }
  return {.scores = from_values(Shape{tokens, num_experts}, logits.dtype(), all_scores),
          .experts = from_values(Shape{tokens, top_k}, DType::i32, all_experts),
          .weights = from_values(Shape{tokens, top_k}, logits.dtype(), all_weights)};
}

// Per token a shuffled ladder of logits 0.25 apart: no two scores are close, so the selection stays put under
// the finite-difference steps of a gradient check.
Tensor separated_logits(std::int64_t tokens, std::int64_t num_experts, Rng& rng) {
  std::vector<double> values;
  for (std::int64_t t = 0; t < tokens; ++t) {
    std::vector<double> row(num_experts);
    for (std::int64_t e = 0; e < num_experts; ++e) row[e] = 0.25 * static_cast<double>(e - num_experts / 2);
    std::shuffle(row.begin(), row.end(), rng);
    values.insert(values.end(), row.begin(), row.end());
  }
  return from_values(Shape{tokens, num_experts}, DType::f64, values);
}

// [T, a] and [T, b] side by side as one [T, a + b] tensor.
Tensor side_by_side(const Tensor& left, const Tensor& right) {
  const std::vector<double> a = to_vector(left), b = to_vector(right);
  const std::int64_t rows = left.size(0), a_columns = left.size(1), b_columns = right.size(1);
  std::vector<double> joined;
  for (std::int64_t r = 0; r < rows; ++r) {
    joined.insert(joined.end(), a.begin() + r * a_columns, a.begin() + (r + 1) * a_columns);
    joined.insert(joined.end(), b.begin() + r * b_columns, b.begin() + (r + 1) * b_columns);
  }
  return from_values(Shape{rows, a_columns + b_columns}, left.dtype(), joined);
}

struct RouterCase {
  std::int64_t tokens, num_experts, top_k, n_groups, top_groups;
};

}  // namespace

TEST_CASE("router matches a per-token reference: shapes, softmax/sigmoid, groups, bias, route_norm, f32 and f64") {
  Rng rng(11);
  const RouterCase cases[] = {{7, 8, 1, 1, 1},  {7, 8, 3, 1, 1},  {33, 8, 8, 1, 1},   {33, 16, 6, 4, 2},
                              {1, 16, 8, 4, 2}, {17, 64, 6, 8, 3}, {17, 64, 8, 1, 1}, {9, 8, 3, 8, 4},
                              {9, 8, 3, 4, 2}};
  for (const RouterCase& c : cases) {
    for (DType dtype : {DType::f32, DType::f64}) {
      for (ops::RouterScore score : {ops::RouterScore::softmax, ops::RouterScore::sigmoid}) {
        for (bool route_norm : {false, true}) {
          for (bool with_bias : {false, true}) {
            CAPTURE(c.tokens);
            CAPTURE(c.num_experts);
            CAPTURE(c.top_k);
            CAPTURE(c.n_groups);
            CAPTURE(dtype);
            CAPTURE(score);
            CAPTURE(route_norm);
            CAPTURE(with_bias);
            const ops::RouterOptions options{.score = score,
                                             .top_k = c.top_k,
                                             .n_groups = c.n_groups,
                                             .top_groups = c.top_groups,
                                             .route_norm = route_norm,
                                             .route_scale = 2.5};
            const Tensor logits = random_normal(Shape{c.tokens, c.num_experts}, dtype, rng, 2.0);
            const Tensor bias =
                with_bias ? random_uniform(Shape{c.num_experts}, DType::f32, rng, -0.05, 0.05) : Tensor();
            const Routing actual = run_router(logits, bias, options);
            const Routing expected = dtype == DType::f32 ? naive_router<float>(logits, bias, options)
                                                         : naive_router<double>(logits, bias, options);
            const double tolerance = dtype == DType::f32 ? 1e-6 : 1e-14;
            DSV3_CHECK_CLOSE(compare(actual.scores, expected.scores, tolerance, tolerance));
            DSV3_CHECK_CLOSE(compare(actual.experts, expected.experts, 0.0, 0.0));
            DSV3_CHECK_CLOSE(compare(actual.weights, expected.weights, tolerance, tolerance));
          }
        }
      }
    }
  }
}

TEST_CASE("router by hand: T=1, E=4, scores 0.1 0.2 0.3 0.4") {
  const Tensor logits =
      from_values(Shape{1, 4}, DType::f64, {std::log(1.0), std::log(2.0), std::log(3.0), std::log(4.0)});
  SUBCASE("top 2, raw scores") {
    const Routing routing = run_router(logits, Tensor(), {.top_k = 2});
    DSV3_CHECK_CLOSE(compare(routing.scores, from_values(Shape{1, 4}, DType::f64, {0.1, 0.2, 0.3, 0.4}), 1e-14, 0));
    CHECK(to_vector(routing.experts) == std::vector<double>{3, 2});
    DSV3_CHECK_CLOSE(compare(routing.weights, from_values(Shape{1, 2}, DType::f64, {0.4, 0.3}), 1e-14, 0));
  }
  SUBCASE("top 2, route_norm and route_scale 2") {
    const Routing routing = run_router(logits, Tensor(), {.top_k = 2, .route_norm = true, .route_scale = 2.0});
    CHECK(to_vector(routing.experts) == std::vector<double>{3, 2});
    DSV3_CHECK_CLOSE(compare(routing.weights, from_values(Shape{1, 2}, DType::f64, {8.0 / 7.0, 6.0 / 7.0}), 1e-14, 0));
  }
  SUBCASE("two groups of two, one kept: group {2, 3} wins 0.7 to 0.3") {
    const Routing routing = run_router(logits, Tensor(), {.top_k = 2, .n_groups = 2, .top_groups = 1});
    CHECK(to_vector(routing.experts) == std::vector<double>{3, 2});
  }
  SUBCASE("a bias of 0.5 on expert 0 makes group {0, 1} win 0.8 to 0.7; the weights stay unbiased") {
    const Tensor bias = from_values(Shape{4}, DType::f32, {0.5, 0, 0, 0});
    const Routing routing = run_router(logits, bias, {.top_k = 2, .n_groups = 2, .top_groups = 1});
    CHECK(to_vector(routing.experts) == std::vector<double>{0, 1});
    DSV3_CHECK_CLOSE(compare(routing.weights, from_values(Shape{1, 2}, DType::f64, {0.1, 0.2}), 1e-14, 0));
  }
  SUBCASE("a NaN score ranks last (as on CUDA): chosen only when nothing else is left") {
    const Tensor with_nan = from_values(Shape{1, 4}, DType::f64, {std::nan(""), 0.0, 1.0, -1.0});
    const ops::RouterOptions sigmoid{.score = ops::RouterScore::sigmoid, .top_k = 3};
    CHECK(to_vector(run_router(with_nan, Tensor(), sigmoid).experts) == std::vector<double>{2, 1, 3});
    const std::vector<double> all = to_vector(run_router(with_nan, Tensor(), {.score = ops::RouterScore::sigmoid,
                                                                               .top_k = 4}).experts);
    CHECK(all == std::vector<double>{2, 1, 3, 0});
  }
  SUBCASE("sigmoid of equal logits: ties go to the lower index") {
    const Tensor zeros = Tensor::zeros(Shape{1, 4}, DType::f64);
    const Routing routing = run_router(zeros, Tensor(), {.score = ops::RouterScore::sigmoid, .top_k = 3});
    CHECK(to_vector(routing.experts) == std::vector<double>{0, 1, 2});
    CHECK(to_vector(routing.weights) == std::vector<double>{0.5, 0.5, 0.5});
  }
}

TEST_CASE("router: a large bias forces an expert into every selection, its weight stays the unbiased score") {
  Rng rng(12);
  const std::int64_t tokens = 21, num_experts = 16, favoured = 5;
  const ops::RouterOptions options{.top_k = 3, .n_groups = 4, .top_groups = 2};
  const Tensor logits = random_normal(Shape{tokens, num_experts}, DType::f32, rng, 2.0);
  const Routing unbiased = run_router(logits, Tensor(), options);
  std::int64_t chosen_without_bias = 0;
  for (std::int64_t t = 0; t < tokens; ++t) chosen_without_bias += value_at(unbiased.experts, t * 3) == favoured;
  REQUIRE(chosen_without_bias < tokens);  // otherwise the bias would prove nothing

  Tensor bias = Tensor::zeros(Shape{num_experts}, DType::f32);
  bias.data<float>()[favoured] = 10.0f;
  const Routing biased = run_router(logits, bias, options);
  for (std::int64_t t = 0; t < tokens; ++t) {
    CAPTURE(t);
    CHECK(value_at(biased.experts, t * 3) == favoured);
    CHECK(value_at(biased.weights, t * 3) == value_at(biased.scores, t * num_experts + favoured));
  }
  DSV3_CHECK_CLOSE(compare(biased.scores, unbiased.scores, 0.0, 0.0));
}

TEST_CASE("router: group limiting keeps every choice inside the top groups and changes the selection") {
  Rng rng(13);
  const std::int64_t tokens = 33, num_experts = 16, top_k = 4;
  const Tensor logits = random_normal(Shape{tokens, num_experts}, DType::f64, rng, 2.0);
  const Routing grouped = run_router(logits, Tensor(), {.top_k = top_k, .n_groups = 4, .top_groups = 2});
  const Routing ungrouped = run_router(logits, Tensor(), {.top_k = top_k});
  std::int64_t differing_tokens = 0;
  for (std::int64_t t = 0; t < tokens; ++t) {
    std::vector<double> groups;
    for (std::int64_t k = 0; k < top_k; ++k) groups.push_back(std::floor(value_at(grouped.experts, t * top_k + k) / 4));
    std::sort(groups.begin(), groups.end());
    CHECK(std::unique(groups.begin(), groups.end()) - groups.begin() <= 2);
    differing_tokens += compare(grouped.experts[t], ungrouped.experts[t], 0, 0).ok ? 0 : 1;
  }
  CHECK(differing_tokens > 0);
}

TEST_CASE("router_backward: f64 gradient check for softmax and sigmoid, with and without route_norm; f32 agrees") {
  Rng rng(14);
  const std::int64_t tokens = 5, num_experts = 16, top_k = 3;
  for (ops::RouterScore score : {ops::RouterScore::softmax, ops::RouterScore::sigmoid}) {
    for (bool route_norm : {false, true}) {
      for (std::int64_t n_groups : {1, 4}) {
        CAPTURE(score);
        CAPTURE(route_norm);
        CAPTURE(n_groups);
        const ops::RouterOptions options{.score = score,
                                         .top_k = top_k,
                                         .n_groups = n_groups,
                                         .top_groups = n_groups == 1 ? 1 : 2,
                                         .route_norm = route_norm,
                                         .route_scale = 2.5};
        const Tensor logits = separated_logits(tokens, num_experts, rng);
        const Tensor bias = random_uniform(Shape{num_experts}, DType::f32, rng, -0.01, 0.01);
        const Routing routing = run_router(logits, bias, options);
        const Tensor dweights = random_uniform(Shape{tokens, top_k}, DType::f64, rng);
        // Overwritten, not accumulated: start from garbage.
        const Tensor dlogits = random_uniform(logits.shape(), DType::f64, rng);
        ops::router_backward(dlogits, dweights, routing.scores, routing.experts, options);
        const auto forward = [&] { return run_router(logits, bias, options).weights; };
        DSV3_CHECK_CLOSE(check_gradients(forward, dweights, {logits}, {dlogits}));

        const Tensor scores32 = from_values(routing.scores.shape(), DType::f32, to_vector(routing.scores));
        const Tensor dweights32 = from_values(dweights.shape(), DType::f32, to_vector(dweights));
        const Tensor dlogits32 = Tensor::empty(logits.shape(), DType::f32);
        ops::router_backward(dlogits32, dweights32, scores32, routing.experts, options);
        DSV3_CHECK_CLOSE(compare(dlogits32, dlogits, 1e-5, 1e-6));
      }
    }
  }
}

TEST_CASE("router_backward: f64 gradient check with a direct gradient of the scores (dscores)") {
  Rng rng(15);
  const std::int64_t tokens = 5, num_experts = 8, top_k = 3;
  for (ops::RouterScore score : {ops::RouterScore::softmax, ops::RouterScore::sigmoid}) {
    for (bool route_norm : {false, true}) {
      CAPTURE(score);
      CAPTURE(route_norm);
      const ops::RouterOptions options{
          .score = score, .top_k = top_k, .n_groups = 2, .top_groups = 1, .route_norm = route_norm, .route_scale = 2.5};
      const Tensor logits = separated_logits(tokens, num_experts, rng);
      const Tensor bias = random_uniform(Shape{num_experts}, DType::f32, rng, -0.01, 0.01);
      const Routing routing = run_router(logits, bias, options);
      const Tensor dweights = random_uniform(Shape{tokens, top_k}, DType::f64, rng);
      const Tensor dscores = random_uniform(Shape{tokens, num_experts}, DType::f64, rng);
      const Tensor dlogits = random_uniform(logits.shape(), DType::f64, rng);  // overwritten: start from garbage
      ops::router_backward(dlogits, dweights, routing.scores, routing.experts, options, dscores);
      // L = Σ dweights ⊙ weights + Σ dscores ⊙ scores, as one upstream over [weights | scores].
      const auto forward = [&] {
        const Routing again = run_router(logits, bias, options);
        return side_by_side(again.weights, again.scores);
      };
      DSV3_CHECK_CLOSE(check_gradients(forward, side_by_side(dweights, dscores), {logits}, {dlogits}));
    }
  }
}

TEST_CASE("router rejects bad options and tensors, naming the op, the option and the value") {
  const Tensor logits = Tensor::zeros(Shape{2, 8}, DType::f32);
  const Tensor scores = Tensor::zeros(Shape{2, 8}, DType::f32);
  const Tensor experts = Tensor::zeros(Shape{2, 2}, DType::i32);
  const Tensor weights = Tensor::zeros(Shape{2, 2}, DType::f32);
  const ops::RouterOptions top2{.top_k = 2};
  const auto forward = [&](const ops::RouterOptions& options) {
    ops::router_forward(scores, experts, weights, logits, Tensor(), options);
  };
  CHECK_THROWS_WITH_AS(forward({.top_k = 0}), doctest::Contains("router_forward: top_k is 0, expected 1 to 8"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(forward({.top_k = 9}), doctest::Contains("router_forward: top_k is 9, expected 1 to 8"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(forward({.top_k = 2, .n_groups = 3}),
                       doctest::Contains("router_forward: n_groups is 3, expected a divisor of the 8 experts"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(forward({.top_k = 2, .n_groups = 2, .top_groups = 3}),
                       doctest::Contains("router_forward: top_groups is 3, expected 1 to n_groups (2)"), dsv3::Error);
  CHECK_THROWS_WITH_AS(forward({.top_k = 2, .n_groups = 2, .top_groups = 0}),
                       doctest::Contains("router_forward: top_groups is 0"), dsv3::Error);
  CHECK_THROWS_WITH_AS(forward({.top_k = 5, .n_groups = 4, .top_groups = 2}),
                       doctest::Contains("router_forward: top_k is 5, but the 2 kept of 4 groups hold only 4 experts"),
                       dsv3::Error);

  CHECK_THROWS_WITH_AS(ops::router_forward(scores, experts, weights, logits, Tensor::zeros(Shape{8}, DType::f64), top2),
                       doctest::Contains("router_forward: expert_bias is f64[8]@cpu, expected dtype f32"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::router_forward(scores, experts, weights, logits, Tensor::zeros(Shape{7}, DType::f32), top2),
                       doctest::Contains("router_forward: expert_bias is f32[7]@cpu, expected shape [8]"), dsv3::Error);
  CHECK_THROWS_WITH_AS(
      ops::router_forward(scores, Tensor::zeros(Shape{2, 2}, DType::i64), weights, logits, Tensor(), top2),
      doctest::Contains("router_forward: experts is i64[2, 2]@cpu, expected dtype i32"), dsv3::Error);
  CHECK_THROWS_WITH_AS(
      ops::router_forward(scores, experts, Tensor::zeros(Shape{2, 2}, DType::f64), logits, Tensor(), top2),
      doctest::Contains("router_forward: tensors of different dtypes"), dsv3::Error);
  CHECK_THROWS_WITH_AS(
      ops::router_forward(Tensor::zeros(Shape{2, 7}, DType::f32), experts, weights, logits, Tensor(), top2),
      doctest::Contains("router_forward: scores is f32[2, 7]@cpu, expected shape [2, 8]"), dsv3::Error);
  CHECK_THROWS_WITH_AS(
      ops::router_forward(scores, experts, weights, Tensor::zeros(Shape{2, 8}, DType::bf16), Tensor(), top2),
      doctest::Contains("router_forward: logits is bf16[2, 8]@cpu, expected f32 or f64"), dsv3::Error);

  CHECK_THROWS_WITH_AS(ops::router_backward(scores, Tensor::zeros(Shape{2, 3}, DType::f32), scores, experts, top2),
                       doctest::Contains("router_backward: dweights is f32[2, 3]@cpu, expected shape [2, 2]"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::router_backward(scores, weights, scores, experts, {.top_k = 2, .n_groups = 16}),
                       doctest::Contains("router_backward: n_groups is 16"), dsv3::Error);
  CHECK_THROWS_WITH_AS(
      ops::router_backward(scores, weights, scores, experts, top2, Tensor::zeros(Shape{2, 7}, DType::f32)),
      doctest::Contains("router_backward: dscores is f32[2, 7]@cpu, expected shape [2, 8]"), dsv3::Error);
}
