#include "dsv3/model/feed_forward.hpp"
#include "dsv3/ops/elementwise.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

using namespace dsv3;
using namespace dsv3::model;
using namespace dsv3::testing;

namespace {

constexpr std::int64_t kRows = 7;
constexpr std::int64_t kDim = 6;
constexpr std::int64_t kHidden = 5;

// Random f64 weights: w1, w3 [H, D], w2 [D, H], or stacked [E, ...] when experts > 0.
FeedForwardWeights random_weights(Rng& rng, std::int64_t experts = 0) {
  const auto shape = [&](std::int64_t rows, std::int64_t columns) {
    return experts > 0 ? Shape{experts, rows, columns} : Shape{rows, columns};
  };
  return {.w1 = random_uniform(shape(kHidden, kDim), DType::f64, rng, -0.5, 0.5),
          .w2 = random_uniform(shape(kDim, kHidden), DType::f64, rng, -0.5, 0.5),
          .w3 = random_uniform(shape(kHidden, kDim), DType::f64, rng, -0.5, 0.5)};
}

std::vector<Tensor> tensors_of(const Tensor& x, const FeedForwardWeights& w) { return {x, w.w1, w.w2, w.w3}; }

Tensor run_forward(const Tensor& x, const FeedForwardWeights& w, const Tensor& offsets = {}) {
  const Tensor out = Tensor::empty(Shape{x.size(0), kDim}, x.dtype());
  FeedForwardRecord record;
  feed_forward_forward(out, record, x, w, offsets);
  return out;
}

// w2(silu(w1 x) · w3 x) for rows [first, last) of x with the [out, in] matrices at w1, w2, w3, as plain loops.
void naive_ffn(std::vector<double>& out, const std::vector<double>& x, std::int64_t first, std::int64_t last,
               const double* w1, const double* w2, const double* w3) {
  for (std::int64_t r = first; r < last; ++r) {
    std::vector<double> hidden(kHidden);
    for (std::int64_t h = 0; h < kHidden; ++h) {
      double gate = 0.0, up = 0.0;
      for (std::int64_t d = 0; d < kDim; ++d) {
        gate += w1[h * kDim + d] * x[r * kDim + d];
        up += w3[h * kDim + d] * x[r * kDim + d];
      }
      hidden[h] = gate / (1.0 + std::exp(-gate)) * up;
    }
    for (std::int64_t d = 0; d < kDim; ++d) {
      out[r * kDim + d] = 0.0;
      for (std::int64_t h = 0; h < kHidden; ++h) out[r * kDim + d] += w2[d * kHidden + h] * hidden[h];
    }
  }
}

// Backward's result: dx and the parameter gradients, accumulated onto `initial` (a copy per tensor).
struct Gradients {
  Tensor dx;
  FeedForwardWeights grads;
};

Gradients run_backward(const Tensor& x, const FeedForwardWeights& w, const Tensor& dout,
                       const FeedForwardWeights& initial, const Tensor& offsets = {}) {
  FeedForwardRecord record;
  feed_forward_forward(Tensor::empty(x.shape(), x.dtype()), record, x, w, offsets);
  Rng garbage(99);
  Gradients result{.dx = random_uniform(x.shape(), x.dtype(), garbage),  // overwritten: start from garbage
                   .grads = {initial.w1.clone(), initial.w2.clone(), initial.w3.clone()}};
  feed_forward_backward(result.dx, dout, record, x, w, result.grads, offsets);
  return result;
}

// b − a, the part of an accumulated gradient that backward added.
Tensor minus(const Tensor& b, const Tensor& a) {
  const Tensor difference = b.clone();
  ops::axpy(difference, -1.0, a);
  return difference;
}

}  // namespace

TEST_CASE("feed_forward_forward matches w2(silu(w1 x) · w3 x) written as loops, f64") {
  Rng rng(1);
  const Tensor x = random_normal(Shape{kRows, kDim}, DType::f64, rng);
  const FeedForwardWeights w = random_weights(rng);
  std::vector<double> expected(kRows * kDim);
  naive_ffn(expected, to_vector(x), 0, kRows, w.w1.data<double>(), w.w2.data<double>(), w.w3.data<double>());
  DSV3_CHECK_CLOSE(compare(run_forward(x, w), from_values(Shape{kRows, kDim}, DType::f64, expected), 1e-12, 1e-12));
}

TEST_CASE("feed_forward_backward: f64 gradient check of x, w1, w2, w3; gradients accumulate, dx is overwritten") {
  Rng rng(2);
  const Tensor x = random_normal(Shape{kRows, kDim}, DType::f64, rng);
  const FeedForwardWeights w = random_weights(rng);
  const FeedForwardWeights initial = random_weights(rng);  // non-zero: backward must add to it
  const Tensor dout = random_uniform(Shape{kRows, kDim}, DType::f64, rng);
  const Gradients g = run_backward(x, w, dout, initial);
  const std::vector<Tensor> added = {g.dx, minus(g.grads.w1, initial.w1), minus(g.grads.w2, initial.w2),
                                     minus(g.grads.w3, initial.w3)};
  DSV3_CHECK_CLOSE(check_gradients([&] { return run_forward(x, w); }, dout, tensors_of(x, w), added));

  // Without dx (an input that needs no gradient) the parameter gradients are the same.
  FeedForwardRecord record;
  feed_forward_forward(Tensor::empty(x.shape(), DType::f64), record, x, w);
  const FeedForwardWeights grads{initial.w1.clone(), initial.w2.clone(), initial.w3.clone()};
  feed_forward_backward(Tensor{}, dout, record, x, w, grads);
  DSV3_CHECK_CLOSE(compare(grads.w1, g.grads.w1, 0.0, 0.0));
  DSV3_CHECK_CLOSE(compare(grads.w2, g.grads.w2, 0.0, 0.0));
  DSV3_CHECK_CLOSE(compare(grads.w3, g.grads.w3, 0.0, 0.0));
}

TEST_CASE("feed_forward with expert offsets: each expert's FFN on its block of rows, one expert empty") {
  Rng rng(3);
  const std::int64_t experts = 3;
  const Tensor offsets = from_values(Shape{experts + 1}, DType::i64, {0, 4, 4, kRows});  // expert 1 owns no rows
  const Tensor x = random_normal(Shape{kRows, kDim}, DType::f64, rng);
  const FeedForwardWeights w = random_weights(rng, experts);

  std::vector<double> expected(kRows * kDim);
  for (std::int64_t e = 0; e < experts; ++e) {
    naive_ffn(expected, to_vector(x), static_cast<std::int64_t>(value_at(offsets, e)),
              static_cast<std::int64_t>(value_at(offsets, e + 1)), w.w1[e].data<double>(), w.w2[e].data<double>(),
              w.w3[e].data<double>());
  }
  DSV3_CHECK_CLOSE(
      compare(run_forward(x, w, offsets), from_values(Shape{kRows, kDim}, DType::f64, expected), 1e-12, 1e-12));

  const FeedForwardWeights initial = random_weights(rng, experts);
  const Tensor dout = random_uniform(Shape{kRows, kDim}, DType::f64, rng);
  const Gradients g = run_backward(x, w, dout, initial, offsets);
  const std::vector<Tensor> added = {g.dx, minus(g.grads.w1, initial.w1), minus(g.grads.w2, initial.w2),
                                     minus(g.grads.w3, initial.w3)};
  DSV3_CHECK_CLOSE(check_gradients([&] { return run_forward(x, w, offsets); }, dout, tensors_of(x, w), added));
  // The empty expert's weights get nothing.
  CHECK(compare(g.grads.w1[1], initial.w1[1], 0.0, 0.0).ok);
}

TEST_CASE("feed_forward rejects an x that is not [rows, dim] and a backward without forward") {
  Rng rng(4);
  const FeedForwardWeights w = random_weights(rng);
  FeedForwardRecord record;
  const Tensor x = Tensor::zeros(Shape{2, 3, kDim}, DType::f64);
  CHECK_THROWS_WITH_AS(feed_forward_forward(Tensor::zeros(Shape{6, kDim}, DType::f64), record, x, w),
                       doctest::Contains("feed_forward_forward: x is f64[2, 3, 6]@cpu, expected [rows, dim]"),
                       dsv3::Error);
  const Tensor rows = Tensor::zeros(Shape{2, kDim}, DType::f64);
  CHECK_THROWS_WITH_AS(feed_forward_backward(rows, rows, record, rows, w, w),
                       doctest::Contains("feed_forward_backward: the record is empty"), dsv3::Error);
}
