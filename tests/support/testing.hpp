// Test utilities: seeded random tensors, closeness checks that report the worst element, and the
// finite-difference gradient check every op and layer is held to.
#pragma once

#include "dsv3/tensor/tensor.hpp"

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace dsv3::testing {

using Rng = std::mt19937_64;

// Uniform in [low, high) (float dtypes) or integers in [low, high) (index dtypes).
Tensor random_uniform(Shape shape, DType dtype, Rng& rng, double low = -1.0, double high = 1.0);
Tensor random_normal(Shape shape, DType dtype, Rng& rng, double stddev = 1.0);
// A tensor of the given dtype holding `values` (converted).
Tensor from_values(Shape shape, DType dtype, const std::vector<double>& values);
// Element i as a double, whatever the (float or index) dtype.
double value_at(const Tensor& tensor, std::int64_t index);
std::vector<double> to_vector(const Tensor& tensor);

struct Comparison {
  bool ok = true;
  double max_abs_error = 0.0;
  double max_rel_error = 0.0;
  std::int64_t worst_index = -1;
  std::string message;  // the worst element, for the failure report
};
// Element-wise |actual − expected| ≤ atol + rtol·|expected| (NaN never passes).
Comparison compare(const Tensor& actual, const Tensor& expected, double rtol, double atol);

// Checks the gradients of L = Σ upstream ⊙ forward() with respect to each of `inputs` (f64 tensors,
// perturbed in place and restored) against `analytic` (one f64 tensor per input, from the op's backward),
// by central differences with step h. At most `max_elements` elements per input are probed (spread evenly).
// Passes when |analytic − numeric| ≤ tolerance · max(1, |numeric|) for every probed element.
struct GradientCheck {
  double tolerance = 1e-6;
  double step = 1e-6;
  std::int64_t max_elements = 256;
};
Comparison check_gradients(const std::function<Tensor()>& forward, const Tensor& upstream,
                           const std::vector<Tensor>& inputs, const std::vector<Tensor>& analytic,
                           const GradientCheck& options = {});

// Σ a ⊙ b in f64 over two tensors of the same shape.
double dot(const Tensor& a, const Tensor& b);

// This process's rank in MPI_COMM_WORLD and the number of ranks, for MPI tests.
int world_rank();
int world_size();

}  // namespace dsv3::testing

// REQUIRE-style check with the comparison's report on failure.
#define DSV3_CHECK_CLOSE(comparison)            \
  do {                                          \
    const auto& dsv3_cmp = (comparison);        \
    INFO(dsv3_cmp.message);                     \
    CHECK(dsv3_cmp.ok);                         \
  } while (false)
