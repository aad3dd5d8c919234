#include "dsv3/ops/loss.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

using namespace dsv3;
using namespace dsv3::testing;

namespace {

constexpr std::int64_t kIgnore = ops::kIgnoreIndex;

struct CrossEntropy {
  double loss = 0.0;
  Tensor lse;      // f64 [N]
  Tensor dlogits;  // f64 [N, V], for dloss
};

// By the definition, in f64: lse = log Σ exp, loss = Σ_valid lse − logit[target],
// dlogits = dloss·(softmax − onehot) on valid rows and 0 on ignored ones.
CrossEntropy naive_cross_entropy(const Tensor& logits, const Tensor& targets, double dloss) {
  const std::int64_t rows = logits.size(0), classes = logits.size(1);
  CrossEntropy result{0.0, Tensor::empty(Shape{rows}, DType::f64), Tensor::zeros(logits.shape(), DType::f64)};
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::vector<double> x = to_vector(logits[r]);
    const double max = *std::max_element(x.begin(), x.end());
    double sum = 0.0;
    for (double value : x) sum += std::exp(value - max);
    const double lse = max + std::log(sum);
    result.lse.data<double>()[r] = lse;
    const auto target = static_cast<std::int64_t>(value_at(targets, r));
    if (target == kIgnore) continue;
    result.loss += lse - x[target];
    for (std::int64_t v = 0; v < classes; ++v) {
      result.dlogits.data<double>()[r * classes + v] = dloss * (std::exp(x[v] - lse) - (v == target ? 1.0 : 0.0));
    }
  }
  return result;
}

// Targets in [0, V), every `ignore_every`-th row (from row 1) set to ignore_index.
Tensor random_targets(std::int64_t rows, std::int64_t classes, DType dtype, std::int64_t ignore_every, Rng& rng) {
  Tensor targets = random_uniform(Shape{rows}, dtype, rng, 0, static_cast<double>(classes));
  std::vector<double> values = to_vector(targets);
  for (std::int64_t r = 1; r < rows; r += ignore_every) values[r] = kIgnore;
  return from_values(Shape{rows}, dtype, values);
}

}  // namespace

TEST_CASE("cross_entropy matches the definition on odd shapes, i32/i64 targets, ignored rows, both dtypes") {
  Rng rng(1);
  for (DType dtype : {DType::f32, DType::f64}) {
    for (DType index : {DType::i32, DType::i64}) {
      for (auto [rows, classes] : {std::pair<std::int64_t, std::int64_t>{1, 1}, {5, 7}, {13, 33}, {64, 257}}) {
        INFO("N ", rows, " V ", classes, " ", std::string(dtype_name(dtype)), " ", std::string(dtype_name(index)));
        const Tensor logits = random_uniform(Shape{rows, classes}, dtype, rng, -4.0, 4.0);
        const Tensor targets = random_targets(rows, classes, index, 3, rng);
        const Tensor loss = Tensor::empty(Shape{}, dtype);
        const Tensor lse = Tensor::empty(Shape{rows}, dtype);
        ops::cross_entropy_forward(loss, lse, logits, targets);
        const double dloss = 0.37;
        const CrossEntropy expected = naive_cross_entropy(logits, targets, dloss);
        const double tolerance = dtype == DType::f32 ? 2e-6 : 1e-13;
        CHECK(value_at(loss, 0) == doctest::Approx(expected.loss).epsilon(tolerance).scale(1.0));
        DSV3_CHECK_CLOSE(compare(lse, expected.lse, tolerance, tolerance));

        const Tensor dlogits = random_uniform(logits.shape(), dtype, rng);  // garbage: overwritten
        ops::cross_entropy_backward(dlogits, logits, lse, targets, dloss);
        DSV3_CHECK_CLOSE(compare(dlogits, expected.dlogits, tolerance, tolerance));
      }
    }
  }
}

TEST_CASE("cross_entropy: large logits do not overflow; all rows ignored gives 0; count_valid_targets") {
  for (DType dtype : {DType::f32, DType::f64}) {
    INFO(std::string(dtype_name(dtype)));
    // Every logit of a row equal to c: lse = c + ln V and the loss of a row is ln V.
    const std::int64_t classes = 50;
    const Tensor logits = from_values(Shape{2, classes}, dtype, std::vector<double>(2 * classes, 1000.0));
    const Tensor targets = from_values(Shape{2}, DType::i64, {3, 49});
    const Tensor loss = Tensor::empty(Shape{}, dtype);
    const Tensor lse = Tensor::empty(Shape{2}, dtype);
    ops::cross_entropy_forward(loss, lse, logits, targets);
    CHECK(value_at(lse, 0) == doctest::Approx(1000.0 + std::log(50.0)).epsilon(1e-7));
    CHECK(value_at(loss, 0) == doctest::Approx(2.0 * std::log(50.0)).epsilon(1e-5));

    const Tensor ignored = from_values(Shape{2}, DType::i32, {kIgnore, kIgnore});
    ops::cross_entropy_forward(loss, lse, logits, ignored);
    CHECK(value_at(loss, 0) == 0.0);
    const Tensor dlogits = from_values(logits.shape(), dtype, std::vector<double>(2 * classes, 7.0));
    ops::cross_entropy_backward(dlogits, logits, lse, ignored, 1.0);
    for (double value : to_vector(dlogits)) CHECK(value == 0.0);
  }

  CHECK(ops::count_valid_targets(from_values(Shape{6}, DType::i32, {0, kIgnore, 5, kIgnore, kIgnore, 1})) == 3);
  CHECK(ops::count_valid_targets(from_values(Shape{2, 2}, DType::i64, {kIgnore, 2, 3, 4})) == 3);
  CHECK(ops::count_valid_targets(from_values(Shape{3}, DType::i64, {-1, 2, -1}), -1) == 1);
  CHECK(ops::count_valid_targets(Tensor::zeros(Shape{0}, DType::i32)) == 0);
}

TEST_CASE("cross_entropy_backward: f64 gradient check with respect to the logits, ignored rows included") {
  Rng rng(2);
  const std::int64_t rows = 9, classes = 11;
  const Tensor logits = random_uniform(Shape{rows, classes}, DType::f64, rng, -3.0, 3.0);
  const Tensor targets = random_targets(rows, classes, DType::i64, 4, rng);  // rows 1 and 5 ignored
  const Tensor loss = Tensor::empty(Shape{}, DType::f64);
  const Tensor lse = Tensor::empty(Shape{rows}, DType::f64);
  ops::cross_entropy_forward(loss, lse, logits, targets);
  const double dloss = 0.7;
  const Tensor dlogits = Tensor::empty(logits.shape(), DType::f64);
  ops::cross_entropy_backward(dlogits, logits, lse, targets, dloss);
  const auto forward = [&] {
    Tensor out = Tensor::empty(Shape{}, DType::f64);
    ops::cross_entropy_forward(out, Tensor::empty(Shape{rows}, DType::f64), logits, targets);
    return out;
  };
  DSV3_CHECK_CLOSE(check_gradients(forward, from_values(Shape{}, DType::f64, {dloss}), {logits}, {dlogits}));
}

TEST_CASE("cross_entropy ops reject bad targets, shapes and dtypes with the op in the message") {
  const Tensor logits = Tensor::zeros(Shape{3, 5}, DType::f32);
  const Tensor loss = Tensor::zeros(Shape{}, DType::f32);
  const Tensor lse = Tensor::zeros(Shape{3}, DType::f32);
  const Tensor targets = from_values(Shape{3}, DType::i32, {0, kIgnore, 4});
  CHECK_THROWS_WITH_AS(ops::cross_entropy_forward(loss, lse, logits, from_values(Shape{3}, DType::i32, {0, 1, 5})),
                       doctest::Contains("cross_entropy_forward: the target of row 2 is 5, expected a class in "
                                         "[0, 5) or the ignore_index -100"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy_forward(loss, lse, logits, from_values(Shape{3}, DType::i64, {-1, 1, 2})),
                       doctest::Contains("cross_entropy_forward: the target of row 0 is -1"), dsv3::Error);
  CHECK_THROWS_WITH_AS(
      ops::cross_entropy_backward(logits, logits, lse, from_values(Shape{3}, DType::i64, {0, 7, 2}), 1.0),
      doctest::Contains("cross_entropy_backward: the target of row 1 is 7"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy_forward(loss, lse, logits, Tensor::zeros(Shape{3}, DType::f32)),
                       doctest::Contains("cross_entropy_forward: targets is f32[3]@cpu, expected i32 or i64"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy_forward(loss, lse, logits, Tensor::zeros(Shape{4}, DType::i32)),
                       doctest::Contains("cross_entropy_forward: targets is i32[4]@cpu, expected shape [3]"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy_forward(Tensor::zeros(Shape{1}, DType::f32), lse, logits, targets),
                       doctest::Contains("cross_entropy_forward: loss is f32[1]@cpu, expected shape []"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy_forward(loss, Tensor::zeros(Shape{3}, DType::f64), logits, targets),
                       doctest::Contains("cross_entropy_forward: tensors of different dtypes"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy_backward(Tensor::zeros(Shape{3, 4}, DType::f32), logits, lse, targets, 1.0),
                       doctest::Contains("cross_entropy_backward: dlogits is f32[3, 4]@cpu, expected shape [3, 5]"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::count_valid_targets(Tensor::zeros(Shape{3}, DType::f64)),
                       doctest::Contains("count_valid_targets: targets is f64[3]@cpu, expected i32 or i64"),
                       dsv3::Error);
}
