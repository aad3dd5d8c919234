#include "dsv3/ops/norm.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

#include <cmath>

using namespace dsv3;
using namespace dsv3::testing;

namespace {

struct RmsNormResult {
  Tensor y;     // f64, like x
  Tensor rstd;  // f64 [rows]
};

// y = x · (mean(x²) + eps)^-½ · w per row, by the definition, in f64.
RmsNormResult naive_rmsnorm(const Tensor& x, const Tensor& w, double eps) {
  const std::int64_t dim = x.size(-1);
  const std::int64_t rows = x.numel() / dim;
  RmsNormResult result{Tensor::empty(x.shape(), DType::f64), Tensor::empty(Shape{rows}, DType::f64)};
  for (std::int64_t row = 0; row < rows; ++row) {
    double mean_square = 0.0;
    for (std::int64_t j = 0; j < dim; ++j) mean_square += std::pow(value_at(x, row * dim + j), 2) / dim;
    const double rstd = 1.0 / std::sqrt(mean_square + eps);
    result.rstd.data<double>()[row] = rstd;
    for (std::int64_t j = 0; j < dim; ++j) {
      result.y.data<double>()[row * dim + j] = value_at(x, row * dim + j) * rstd * value_at(w, j);
    }
  }
  return result;
}

Tensor rows_of(const Tensor& x) { return Tensor::empty(Shape{x.numel() / x.size(-1)}, x.dtype()); }

}  // namespace

TEST_CASE("rmsnorm_forward matches the definition on odd shapes, both dtypes") {
  Rng rng(1);
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const Shape& shape : {Shape{1, 1}, Shape{3, 7}, Shape{2, 5, 33}, Shape{4, 256}, Shape{17}}) {
      INFO("x ", shape.to_string(), " ", std::string(dtype_name(dtype)));
      const Tensor x = random_uniform(shape, dtype, rng, -2.0, 2.0);
      const Tensor w = random_uniform(Shape{shape[-1]}, dtype, rng, 0.5, 1.5);
      const Tensor y = Tensor::empty(shape, dtype);
      const Tensor rstd = rows_of(x);
      ops::rmsnorm_forward(y, rstd, x, w, 1e-5);
      const RmsNormResult expected = naive_rmsnorm(x, w, 1e-5);
      const double rtol = dtype == DType::f32 ? 1e-5 : 1e-13;
      DSV3_CHECK_CLOSE(compare(y, expected.y, rtol, rtol));
      DSV3_CHECK_CLOSE(compare(rstd, expected.rstd, rtol, rtol));
    }
  }
}

TEST_CASE("rmsnorm: eps keeps an all-zero row finite") {
  const Tensor x = Tensor::zeros(Shape{2, 8}, DType::f32);
  const Tensor w = from_values(Shape{8}, DType::f32, std::vector<double>(8, 1.0));
  const Tensor y = Tensor::empty(x.shape(), DType::f32);
  const Tensor rstd = rows_of(x);
  ops::rmsnorm_forward(y, rstd, x, w, 1e-6);
  for (double value : to_vector(y)) CHECK(value == 0.0);
  for (double value : to_vector(rstd)) CHECK(value == doctest::Approx(1e3).epsilon(1e-6));
}

TEST_CASE("rmsnorm_backward: f64 gradient check of dx and dw; dw accumulates") {
  Rng rng(2);
  for (const Shape& shape : {Shape{1, 1}, Shape{3, 7}, Shape{2, 3, 65}}) {
    INFO("x ", shape.to_string());
    const double eps = 1e-5;
    const Tensor x = random_uniform(shape, DType::f64, rng, -2.0, 2.0);
    const Tensor w = random_uniform(Shape{shape[-1]}, DType::f64, rng, 0.5, 1.5);
    const Tensor y = Tensor::empty(shape, DType::f64);
    const Tensor rstd = rows_of(x);
    ops::rmsnorm_forward(y, rstd, x, w, eps);

    const Tensor dy = random_uniform(shape, DType::f64, rng);
    const Tensor dx = random_uniform(shape, DType::f64, rng);  // garbage: dx is overwritten
    const Tensor dw_initial = random_uniform(w.shape(), DType::f64, rng);
    const Tensor dw = dw_initial.clone();
    ops::rmsnorm_backward(dx, dw, dy, x, w, rstd);
    // dw accumulates: the fresh contribution is what was added to the initial values.
    const Tensor dw_fresh = Tensor::empty(w.shape(), DType::f64);
    for (std::int64_t i = 0; i < dw.numel(); ++i) {
      dw_fresh.data<double>()[i] = dw.data<double>()[i] - dw_initial.data<double>()[i];
    }
    const auto forward = [&] {
      Tensor out = Tensor::empty(shape, DType::f64);
      ops::rmsnorm_forward(out, rows_of(x), x, w, eps);
      return out;
    };
    DSV3_CHECK_CLOSE(check_gradients(forward, dy, {x, w}, {dx, dw_fresh}));

    // A second backward adds the same contribution again.
    ops::rmsnorm_backward(dx, dw, dy, x, w, rstd);
    for (std::int64_t i = 0; i < dw.numel(); ++i) {
      CHECK(dw.data<double>()[i] == doctest::Approx(dw_initial.data<double>()[i] + 2 * dw_fresh.data<double>()[i]));
    }
  }
}

TEST_CASE("rmsnorm_backward in f32 matches f64 on the same data") {
  Rng rng(3);
  const Shape shape{37, 130};  // more columns than one block of the dw reduction, and an odd remainder
  const Tensor x64 = random_uniform(shape, DType::f64, rng);
  const Tensor w64 = random_uniform(Shape{shape[-1]}, DType::f64, rng, 0.5, 1.5);
  const Tensor dy64 = random_uniform(shape, DType::f64, rng);
  const Tensor x32 = from_values(shape, DType::f32, to_vector(x64));
  const Tensor w32 = from_values(w64.shape(), DType::f32, to_vector(w64));
  const Tensor dy32 = from_values(shape, DType::f32, to_vector(dy64));

  const auto backward = [&](const Tensor& x, const Tensor& w, const Tensor& dy) {
    const Tensor y = Tensor::empty(shape, x.dtype());
    const Tensor rstd = rows_of(x);
    ops::rmsnorm_forward(y, rstd, x, w, 1e-5);
    const Tensor dx = Tensor::empty(shape, x.dtype());
    const Tensor dw = Tensor::zeros(w.shape(), x.dtype());
    ops::rmsnorm_backward(dx, dw, dy, x, w, rstd);
    return std::pair{dx, dw};
  };
  const auto [dx64, dw64] = backward(x64, w64, dy64);
  const auto [dx32, dw32] = backward(x32, w32, dy32);
  DSV3_CHECK_CLOSE(compare(dx32, dx64, 1e-4, 1e-5));
  DSV3_CHECK_CLOSE(compare(dw32, dw64, 1e-4, 1e-5));
}

TEST_CASE("rmsnorm ops reject bad shapes and dtypes with the op in the message") {
  const Tensor x = Tensor::zeros(Shape{4, 8}, DType::f32);
  const Tensor w = Tensor::zeros(Shape{8}, DType::f32);
  const Tensor y = Tensor::zeros(Shape{4, 8}, DType::f32);
  const Tensor rstd = Tensor::zeros(Shape{4}, DType::f32);
  CHECK_THROWS_WITH_AS(ops::rmsnorm_forward(y, rstd, x, Tensor::zeros(Shape{7}, DType::f32), 1e-5),
                       doctest::Contains("rmsnorm_forward: w is f32[7]@cpu, expected shape [8]"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::rmsnorm_forward(y, Tensor::zeros(Shape{8}, DType::f32), x, w, 1e-5),
                       doctest::Contains("rmsnorm_forward: rstd is f32[8]@cpu, expected shape [4]"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::rmsnorm_forward(Tensor::zeros(Shape{4, 8}, DType::f64), rstd, x, w, 1e-5),
                       doctest::Contains("rmsnorm_forward: tensors of different dtypes"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::rmsnorm_forward(y, rstd, Tensor::zeros(Shape{4, 8}, DType::bf16), w, 1e-5),
                       doctest::Contains("rmsnorm_forward: x is bf16[4, 8]@cpu, expected f32 or f64"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::rmsnorm_forward(y, rstd, x, w, -1.0), doctest::Contains("rmsnorm_forward: eps is -1"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(
      ops::rmsnorm_backward(Tensor::zeros(Shape{4, 8}, DType::f32), w, x.view(Shape{8, 4}), x, w, rstd),
      doctest::Contains("rmsnorm_backward: dy is f32[8, 4]@cpu, expected shape [4, 8]"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::rmsnorm_backward(y, Tensor::zeros(Shape{8}, DType::f64), y, x, w, rstd),
                       doctest::Contains("rmsnorm_backward: tensors of different dtypes"), dsv3::Error);
}
