#include "dsv3/ops/activation.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

#include <cmath>

using namespace dsv3;
using namespace dsv3::testing;

namespace {

// h = gate / (1 + e^−gate) · up, by the definition, in f64 (1/(1 + inf) = 0 is exact for very negative gates).
Tensor naive_swiglu(const Tensor& gate, const Tensor& up) {
  Tensor h = Tensor::empty(gate.shape(), DType::f64);
  for (std::int64_t i = 0; i < gate.numel(); ++i) {
    const double g = value_at(gate, i);
    h.data<double>()[i] = g / (1.0 + std::exp(-g)) * value_at(up, i);
  }
  return h;
}

}  // namespace

TEST_CASE("swiglu_forward matches silu(gate)·up on odd shapes, both dtypes") {
  Rng rng(1);
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const Shape& shape : {Shape{1}, Shape{3, 7}, Shape{2, 5, 33}, Shape{129, 65}}) {
      INFO("gate ", shape.to_string(), " ", std::string(dtype_name(dtype)));
      const Tensor gate = random_uniform(shape, dtype, rng, -6.0, 6.0);
      const Tensor up = random_uniform(shape, dtype, rng, -2.0, 2.0);
      const Tensor h = Tensor::empty(shape, dtype);
      ops::swiglu_forward(h, gate, up);
      const double tolerance = dtype == DType::f32 ? 1e-6 : 1e-14;
      DSV3_CHECK_CLOSE(compare(h, naive_swiglu(gate, up), tolerance, tolerance));
    }
  }
}

TEST_CASE("swiglu stays finite and right for large |gate|, forward and backward, both dtypes") {
  const std::vector<double> gates{-1000.0, -100.0, -30.0, 30.0, 100.0, 1000.0};
  for (DType dtype : {DType::f32, DType::f64}) {
    INFO(std::string(dtype_name(dtype)));
    const Shape shape{6};
    const Tensor gate = from_values(shape, dtype, gates);
    const Tensor up = from_values(shape, dtype, std::vector<double>(6, 0.5));
    const Tensor h = Tensor::empty(shape, dtype);
    ops::swiglu_forward(h, gate, up);
    const double tolerance = dtype == DType::f32 ? 1e-6 : 1e-14;
    DSV3_CHECK_CLOSE(compare(h, naive_swiglu(gate, up), tolerance, 1e-30));

    const Tensor dh = from_values(shape, dtype, std::vector<double>(6, 2.0));
    const Tensor dgate = Tensor::empty(shape, dtype);
    const Tensor dup = Tensor::empty(shape, dtype);
    ops::swiglu_backward(dgate, dup, dh, gate, up);
    for (std::int64_t i = 0; i < 6; ++i) {
      INFO("gate ", gates[i]);
      CHECK(std::isfinite(value_at(dgate, i)));
      CHECK(std::isfinite(value_at(dup, i)));
      // silu' → 0 for g → −∞ and → 1 for g → +∞; dup = dh·silu(g).
      CHECK(value_at(dgate, i) == doctest::Approx(gates[i] > 0 ? 2.0 * 0.5 : 0.0));
      CHECK(value_at(dup, i) == doctest::Approx(gates[i] > 0 ? 2.0 * gates[i] : 0.0));
    }
  }
}

TEST_CASE("swiglu_backward: f64 gradient check of dgate and dup; f32 matches f64; outputs overwritten") {
  Rng rng(2);
  const Shape shape{7, 19};
  const Tensor gate = random_uniform(shape, DType::f64, rng, -5.0, 5.0);
  const Tensor up = random_uniform(shape, DType::f64, rng, -2.0, 2.0);
  const Tensor dh = random_uniform(shape, DType::f64, rng);
  const Tensor dgate = random_uniform(shape, DType::f64, rng);  // garbage: overwritten
  const Tensor dup = random_uniform(shape, DType::f64, rng);
  ops::swiglu_backward(dgate, dup, dh, gate, up);
  const auto forward = [&] {
    Tensor h = Tensor::empty(shape, DType::f64);
    ops::swiglu_forward(h, gate, up);
    return h;
  };
  DSV3_CHECK_CLOSE(check_gradients(forward, dh, {gate, up}, {dgate, dup}));

  const auto as_f32 = [](const Tensor& t) { return from_values(t.shape(), DType::f32, to_vector(t)); };
  const Tensor dgate32 = Tensor::empty(shape, DType::f32);
  const Tensor dup32 = Tensor::empty(shape, DType::f32);
  ops::swiglu_backward(dgate32, dup32, as_f32(dh), as_f32(gate), as_f32(up));
  DSV3_CHECK_CLOSE(compare(dgate32, dgate, 1e-5, 1e-6));
  DSV3_CHECK_CLOSE(compare(dup32, dup, 1e-5, 1e-6));
}

TEST_CASE("swiglu ops reject bad shapes and dtypes with the op in the message") {
  const Tensor gate = Tensor::zeros(Shape{4, 6}, DType::f32);
  const Tensor h = Tensor::zeros(Shape{4, 6}, DType::f32);
  CHECK_THROWS_WITH_AS(ops::swiglu_forward(h, gate, Tensor::zeros(Shape{6, 4}, DType::f32)),
                       doctest::Contains("swiglu_forward: up is f32[6, 4]@cpu, expected shape [4, 6]"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::swiglu_forward(h, gate, Tensor::zeros(Shape{4, 6}, DType::f64)),
                       doctest::Contains("swiglu_forward: tensors of different dtypes"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::swiglu_forward(h, Tensor::zeros(Shape{4, 6}, DType::bf16), gate),
                       doctest::Contains("swiglu_forward: gate is bf16[4, 6]@cpu, expected f32 or f64"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::swiglu_backward(h, Tensor::zeros(Shape{24}, DType::f32), h, gate, gate),
                       doctest::Contains("swiglu_backward: dup is f32[24]@cpu, expected shape [4, 6]"), dsv3::Error);
}
