#include "support/testing.hpp"

#include "dsv3/core/error.hpp"

#include <mpi.h>

#include <algorithm>
#include <cmath>

namespace dsv3::testing {

namespace {

void set_value(const Tensor& tensor, std::int64_t index, double value) {
  switch (tensor.dtype()) {
    case DType::f32: tensor.data<float>()[index] = static_cast<float>(value); return;
    case DType::f64: tensor.data<double>()[index] = value; return;
    case DType::bf16: tensor.data<bf16>()[index] = f32_to_bf16(static_cast<float>(value)); return;
    case DType::fp8_e4m3: tensor.data<fp8_e4m3>()[index] = f32_to_fp8_e4m3(static_cast<float>(value)); return;
    case DType::i32: tensor.data<std::int32_t>()[index] = static_cast<std::int32_t>(value); return;
    case DType::i64: tensor.data<std::int64_t>()[index] = static_cast<std::int64_t>(value); return;
  }
}

template <class Generate>
Tensor generate(Shape shape, DType dtype, Generate&& next) {
  Tensor tensor = Tensor::empty(shape, dtype);
  for (std::int64_t i = 0; i < tensor.numel(); ++i) set_value(tensor, i, next());
  return tensor;
}

}  // namespace

double value_at(const Tensor& tensor, std::int64_t index) {
  switch (tensor.dtype()) {
    case DType::f32: return tensor.data<float>()[index];
    case DType::f64: return tensor.data<double>()[index];
    case DType::bf16: return bf16_to_f32(tensor.data<bf16>()[index]);
    case DType::fp8_e4m3: return fp8_e4m3_to_f32(tensor.data<fp8_e4m3>()[index]);
    case DType::i32: return tensor.data<std::int32_t>()[index];
    case DType::i64: return static_cast<double>(tensor.data<std::int64_t>()[index]);
  }
  return 0.0;
}

std::vector<double> to_vector(const Tensor& tensor) {
  std::vector<double> values(static_cast<std::size_t>(tensor.numel()));
  for (std::int64_t i = 0; i < tensor.numel(); ++i) values[static_cast<std::size_t>(i)] = value_at(tensor, i);
  return values;
}

Tensor random_uniform(Shape shape, DType dtype, Rng& rng, double low, double high) {
  if (!is_floating(dtype)) {
    std::uniform_int_distribution<std::int64_t> dist(static_cast<std::int64_t>(low),
                                                     static_cast<std::int64_t>(high) - 1);
    return generate(shape, dtype, [&] { return static_cast<double>(dist(rng)); });
  }
  std::uniform_real_distribution<double> dist(low, high);
  return generate(shape, dtype, [&] { return dist(rng); });
}

Tensor random_normal(Shape shape, DType dtype, Rng& rng, double stddev) {
  std::normal_distribution<double> dist(0.0, stddev);
  return generate(shape, dtype, [&] { return dist(rng); });
}

Tensor from_values(Shape shape, DType dtype, const std::vector<double>& values) {
  DSV3_CHECK(static_cast<std::int64_t>(values.size()) == shape.numel(), "from_values: {} values for shape {}",
             values.size(), shape.to_string());
  std::size_t next = 0;
  return generate(shape, dtype, [&] { return values[next++]; });
}

Comparison compare(const Tensor& actual, const Tensor& expected, double rtol, double atol) {
  Comparison result;
  if (!(actual.shape() == expected.shape())) {
    result.ok = false;
    result.message = fmt::format("shape mismatch: actual {} expected {}", actual.describe(), expected.describe());
    return result;
  }
  double worst_excess = -1.0;
  for (std::int64_t i = 0; i < actual.numel(); ++i) {
    const double a = value_at(actual, i);
    const double e = value_at(expected, i);
    const double error = a == e ? 0.0 : std::fabs(a - e);  // equal infinities match
    const bool within = error <= atol + rtol * std::fabs(e);
    const double excess = std::isnan(error) ? INFINITY : error - (atol + rtol * std::fabs(e));
    result.max_abs_error = std::max(result.max_abs_error, std::isnan(error) ? INFINITY : error);
    if (e != 0.0) result.max_rel_error = std::max(result.max_rel_error, error / std::fabs(e));
    if (!within) result.ok = false;
    if (excess > worst_excess) {
      worst_excess = excess;
      result.worst_index = i;
    }
  }
  if (result.worst_index >= 0) {
    result.message = fmt::format(
        "{} vs {}: worst element {}: actual {:.10g} expected {:.10g}; max abs error {:.3g}, max rel error {:.3g} "
        "(rtol {:.1g}, atol {:.1g})",
        actual.describe(), expected.describe(), result.worst_index, value_at(actual, result.worst_index),
        value_at(expected, result.worst_index), result.max_abs_error, result.max_rel_error, rtol, atol);
  }
  return result;
}

double dot(const Tensor& a, const Tensor& b) {
  DSV3_CHECK(a.numel() == b.numel(), "dot: {} and {}", a.describe(), b.describe());
  double sum = 0.0;
  for (std::int64_t i = 0; i < a.numel(); ++i) sum += value_at(a, i) * value_at(b, i);
  return sum;
}

Comparison check_gradients(const std::function<Tensor()>& forward, const Tensor& upstream,
                           const std::vector<Tensor>& inputs, const std::vector<Tensor>& analytic,
                           const GradientCheck& options) {
  DSV3_CHECK(inputs.size() == analytic.size(), "check_gradients: {} inputs but {} analytic gradients",
             inputs.size(), analytic.size());
  Comparison result;
  double worst_excess = -INFINITY;
  for (std::size_t input = 0; input < inputs.size(); ++input) {
    const Tensor& x = inputs[input];
    DSV3_CHECK(x.dtype() == DType::f64 && analytic[input].dtype() == DType::f64 &&
                   analytic[input].shape() == x.shape(),
               "check_gradients: input {} is {} with gradient {}; both must be f64 of one shape", input,
               x.describe(), analytic[input].describe());
    double* values = x.data<double>();
    const std::int64_t n = x.numel();
    const std::int64_t probes = std::min(n, options.max_elements);
    for (std::int64_t p = 0; p < probes; ++p) {
      const std::int64_t i = probes == n ? p : p * n / probes;
      const double saved = values[i];
      values[i] = saved + options.step;
      const double plus = dot(upstream, forward());
      values[i] = saved - options.step;
      const double minus = dot(upstream, forward());
      values[i] = saved;
      const double numeric = (plus - minus) / (2.0 * options.step);
      const double exact = analytic[input].data<double>()[i];
      const double error = std::fabs(exact - numeric);
      const double allowed = options.tolerance * std::max(1.0, std::fabs(numeric));
      if (!(error <= allowed)) result.ok = false;
      result.max_abs_error = std::max(result.max_abs_error, error);
      if (error - allowed > worst_excess) {
        worst_excess = error - allowed;
        result.worst_index = i;
        result.message = fmt::format(
            "input {} ({}), element {}: analytic {:.12g}, numeric {:.12g}, error {:.3g} (allowed {:.3g})", input,
            x.describe(), i, exact, numeric, error, allowed);
      }
    }
  }
  return result;
}

int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

int world_size() {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

}  // namespace dsv3::testing
