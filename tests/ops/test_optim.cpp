#include "dsv3/ops/optim.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

#include <cmath>

using namespace dsv3;
using namespace dsv3::testing;

namespace {

const std::vector<Shape> kShapes{Shape{300, 257}, Shape{1, 1}, Shape{128, 128}, Shape{129, 1}, Shape{3, 5, 7}};

// One AdamW step by the textbook formula, in f64: decoupled decay, moments, bias-corrected moments m̂ and v̂.
void naive_adamw(std::vector<double>& p, std::vector<double>& m, std::vector<double>& v,
                 const std::vector<double>& g, const ops::AdamWOptions& o) {
  const double bias_correction1 = 1.0 - std::pow(o.beta1, static_cast<double>(o.step));
  const double bias_correction2 = 1.0 - std::pow(o.beta2, static_cast<double>(o.step));
  for (std::size_t i = 0; i < p.size(); ++i) {
    p[i] *= 1.0 - o.lr * o.weight_decay;
    m[i] = o.beta1 * m[i] + (1.0 - o.beta1) * g[i];
    v[i] = o.beta2 * v[i] + (1.0 - o.beta2) * g[i] * g[i];
    const double m_hat = m[i] / bias_correction1;
    const double v_hat = v[i] / bias_correction2;
    p[i] -= o.lr * m_hat / (std::sqrt(v_hat) + o.eps);
  }
}

double naive_sum_of_squares(const Tensor& x) {
  double sum = 0.0;
  for (double value : to_vector(x)) sum += value * value;
  return sum;
}

}  // namespace

TEST_CASE("adamw_step follows torch's AdamW over several steps, f64 and f32") {
  Rng rng(1);
  for (DType dtype : {DType::f64, DType::f32}) {
    const double tolerance = dtype == DType::f64 ? 1e-12 : 1e-5;
    for (const Shape& shape : kShapes) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(shape);
      const Tensor param = random_uniform(shape, dtype, rng);
      const Tensor exp_avg = Tensor::zeros(shape, dtype);
      const Tensor exp_avg_sq = Tensor::zeros(shape, dtype);
      std::vector<double> p = to_vector(param), m(p.size(), 0.0), v(p.size(), 0.0);
      ops::AdamWOptions options{.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
      for (options.step = 1; options.step <= 5; ++options.step) {
        // Gradients of varied magnitude, so the moments do not all look alike.
        const Tensor grad = random_normal(shape, dtype, rng, static_cast<double>(options.step));
        ops::adamw_step(param, grad, exp_avg, exp_avg_sq, options);
        naive_adamw(p, m, v, to_vector(grad), options);
      }
      DSV3_CHECK_CLOSE(compare(param, from_values(shape, DType::f64, p), tolerance, tolerance));
      DSV3_CHECK_CLOSE(compare(exp_avg, from_values(shape, DType::f64, m), tolerance, tolerance));
      DSV3_CHECK_CLOSE(compare(exp_avg_sq, from_values(shape, DType::f64, v), tolerance, tolerance));
    }
  }
}

TEST_CASE("adamw_step: the first step moves each parameter by lr·sign(g) beyond the decay") {
  // Step 1: m̂ = g and v̂ = g², so the update is lr·g/(|g| + eps), lr·sign(g) up to lr·eps/|g|.
  const std::vector<double> p0{0.5, -0.25, 2.0, 1.0, -3.0};
  const std::vector<double> g{0.1, -3.0, 1e-3, -1e-4, 0.0};
  const Shape shape{5};
  const ops::AdamWOptions options{.lr = 0.01, .eps = 1e-8, .weight_decay = 0.1, .step = 1};
  const Tensor param = from_values(shape, DType::f64, p0);
  ops::adamw_step(param, from_values(shape, DType::f64, g), Tensor::zeros(shape, DType::f64),
                  Tensor::zeros(shape, DType::f64), options);
  for (std::size_t i = 0; i < p0.size(); ++i) {
    CAPTURE(i);
    const double decayed = p0[i] * (1.0 - 0.01 * 0.1);
    const double sign = g[i] > 0 ? 1.0 : g[i] < 0 ? -1.0 : 0.0;
    const double movement = param.data<double>()[i] - decayed;
    const double eps_effect = g[i] == 0.0 ? 0.0 : 0.01 * 1e-8 / std::fabs(g[i]);
    CHECK(std::fabs(movement + 0.01 * sign) <= eps_effect + 1e-15);
  }
}

TEST_CASE("adamw_step with zero gradients only decays: p·(1 − lr·wd)^steps, moments stay zero") {
  Rng rng(2);
  const Shape shape{129, 3};
  const Tensor param = random_uniform(shape, DType::f64, rng);
  const std::vector<double> p0 = to_vector(param);
  const Tensor zero = Tensor::zeros(shape, DType::f64);
  const Tensor exp_avg = Tensor::zeros(shape, DType::f64);
  const Tensor exp_avg_sq = Tensor::zeros(shape, DType::f64);
  ops::AdamWOptions options{.lr = 0.05, .weight_decay = 0.2};
  for (options.step = 1; options.step <= 4; ++options.step) ops::adamw_step(param, zero, exp_avg, exp_avg_sq, options);
  std::vector<double> expected(p0.size());
  for (std::size_t i = 0; i < p0.size(); ++i) expected[i] = p0[i] * std::pow(1.0 - 0.05 * 0.2, 4);
  DSV3_CHECK_CLOSE(compare(param, from_values(shape, DType::f64, expected), 1e-15, 0.0));
  DSV3_CHECK_CLOSE(compare(exp_avg, zero, 0.0, 0.0));
  DSV3_CHECK_CLOSE(compare(exp_avg_sq, zero, 0.0, 0.0));
}

TEST_CASE("sum_of_squares and global_l2_norm match a plain f64 sum, over several chunks and mixed dtypes") {
  Rng rng(3);
  std::vector<Tensor> tensors;
  double total = 0.0;
  for (const Shape& shape : kShapes) {
    for (DType dtype : {DType::f32, DType::f64}) {
      CAPTURE(shape);
      CAPTURE(dtype_name(dtype));
      const Tensor x = random_normal(shape, dtype, rng);
      const double expected = naive_sum_of_squares(x);
      CHECK(std::fabs(ops::sum_of_squares(x) - expected) <= 1e-12 * expected);
      tensors.push_back(x);
      total += expected;
    }
  }
  CHECK(ops::sum_of_squares(Tensor::zeros(Shape{0, 3}, DType::f32)) == 0.0);
  CHECK(std::fabs(ops::global_l2_norm(tensors) - std::sqrt(total)) <= 1e-12 * std::sqrt(total));
  CHECK(ops::global_l2_norm({}) == 0.0);
  const Tensor three_four = from_values(Shape{2}, DType::f32, {3.0, -4.0});
  CHECK(ops::global_l2_norm(std::span(&three_four, 1)) == 5.0);
}

TEST_CASE("optim ops reject bad shapes, dtypes and options with the op in the message") {
  const Tensor p = Tensor::zeros(Shape{2, 2}, DType::f32);
  const Tensor p64 = Tensor::zeros(Shape{2, 2}, DType::f64);
  const Tensor flat = Tensor::zeros(Shape{4}, DType::f32);
  const ops::AdamWOptions ok{};
  CHECK_THROWS_WITH_AS(ops::adamw_step(p, flat, p, p, ok),
                       doctest::Contains("adamw_step: grad is f32[4]@cpu, expected shape [2, 2]"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::adamw_step(p, p, p, flat, ok),
                       doctest::Contains("adamw_step: exp_avg_sq is f32[4]@cpu, expected shape [2, 2]"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::adamw_step(p, p, p64, p, ok), doctest::Contains("adamw_step: tensors of different dtypes"),
                       dsv3::Error);
  const Tensor half = Tensor::zeros(Shape{2, 2}, DType::bf16);
  CHECK_THROWS_WITH_AS(ops::adamw_step(half, half, half, half, ok),
                       doctest::Contains("adamw_step: param is bf16[2, 2]@cpu, expected f32 or f64"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::adamw_step(p, p, p, p, {.step = 0}),
                       doctest::Contains("adamw_step: step is 0, expected >= 1"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::adamw_step(p, p, p, p, {.beta1 = 1.0}),
                       doctest::Contains("adamw_step: betas (1, 0.95) must lie in [0, 1)"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::adamw_step(p, p, p, p, {.lr = -1.0}),
                       doctest::Contains("adamw_step: lr -1, eps 1e-08 and weight_decay 0.1 must be >= 0"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::sum_of_squares(half), doctest::Contains("sum_of_squares: x is bf16[2, 2]@cpu"),
                       dsv3::Error);
  const std::vector<Tensor> mixed{p, Tensor::zeros(Shape{3}, DType::i32)};
  CHECK_THROWS_WITH_AS(ops::global_l2_norm(mixed),
                       doctest::Contains("global_l2_norm: tensors[1] is i32[3]@cpu, expected f32 or f64"),
                       dsv3::Error);
}
