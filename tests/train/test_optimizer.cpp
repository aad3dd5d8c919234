#include "dsv3/train/optimizer.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

using namespace dsv3;
using namespace dsv3::train;

namespace {

Tensor values(const std::vector<double>& list, DType dtype = DType::f64) {
  Tensor tensor = Tensor::empty({static_cast<std::int64_t>(list.size())}, dtype);
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (dtype == DType::f64) {
      tensor.data<double>()[i] = list[i];
    } else {
      tensor.data<float>()[i] = static_cast<float>(list[i]);
    }
  }
  return tensor;
}

}  // namespace

TEST_CASE("clip_grad_norm: scales to max_norm when above, leaves the gradients alone when below or off") {
  const Tensor grads = values({3.0, 4.0});  // norm 5
  CHECK(clip_grad_norm(grads, 1.0) == doctest::Approx(5.0));
  CHECK(grads.data<double>()[0] == doctest::Approx(3.0 / (5.0 + 1e-6)));
  CHECK(grads.data<double>()[1] == doctest::Approx(4.0 / (5.0 + 1e-6)));
  CHECK(std::hypot(grads.data<double>()[0], grads.data<double>()[1]) == doctest::Approx(1.0).epsilon(1e-6));

  const Tensor small = values({0.3, 0.4});
  CHECK(clip_grad_norm(small, 1.0) == doctest::Approx(0.5));
  CHECK(small.data<double>()[0] == 0.3);

  const Tensor unclipped = values({30.0, 40.0}, DType::f32);
  CHECK(clip_grad_norm(unclipped, 0.0) == doctest::Approx(50.0));
  CHECK(unclipped.data<float>()[1] == 40.0f);
}

TEST_CASE("AdamW: the first steps as torch.optim.AdamW computes them") {
  const Tensor params = values({1.0, -2.0});
  const Tensor grads = values({0.5, -0.25});
  AdamW optimizer(params, grads, {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1});
  optimizer.step(0.01);
  CHECK(optimizer.steps_taken() == 1);
  // Step 1: bias-corrected m̂ = g and v̂ = g², so the update is lr · g/(|g| + eps) after the decay p·(1 − lr·wd).
  CHECK(params.data<double>()[0] == doctest::Approx(1.0 * (1 - 0.001) - 0.01 * 0.5 / (0.5 + 1e-8)).epsilon(1e-12));
  CHECK(params.data<double>()[1] == doctest::Approx(-2.0 * (1 - 0.001) + 0.01 * 0.25 / (0.25 + 1e-8)).epsilon(1e-12));
  // Step 2 with the same gradient: m̂ = g and v̂ = g² again, so the same update.
  const double before = params.data<double>()[0];
  optimizer.step(0.01);
  CHECK(optimizer.steps_taken() == 2);
  CHECK(params.data<double>()[0] == doctest::Approx(before * (1 - 0.001) - 0.01 * 0.5 / (0.5 + 1e-8)).epsilon(1e-12));
}
