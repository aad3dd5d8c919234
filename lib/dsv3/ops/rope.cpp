#include "dsv3/ops/rope.hpp"

#include "dsv3/ops/cpu/rope.hpp"
#include "dsv3/ops/cuda/rope.hpp"
#include "dsv3/ops/cuda_dispatch.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace dsv3::ops {

namespace {

void check_config(const char* op, const RopeConfig& config) {
  DSV3_CHECK(config.rope_dim >= 2 && config.rope_dim % 2 == 0, "{}: rope_dim is {}, expected an even number >= 2", op,
             config.rope_dim);
  DSV3_CHECK(config.theta > 1.0, "{}: theta is {}, expected a number > 1", op, config.theta);
  DSV3_CHECK(config.factor > 0.0, "{}: factor is {}, expected a number > 0", op, config.factor);
  DSV3_CHECK(config.beta_slow > 0.0 && config.beta_fast >= config.beta_slow,
             "{}: beta_fast is {} and beta_slow {}, expected beta_fast >= beta_slow > 0", op, config.beta_fast,
             config.beta_slow);
  DSV3_CHECK(config.original_seq_len >= 1, "{}: original_seq_len is {}, expected >= 1", op, config.original_seq_len);
}

// The (fractional) dimension index, out of rope_dim, whose frequency makes `rotations` full turns over the
// original context: corr(r) = rope_dim·ln(original_seq_len/(2π·r)) / (2·ln theta).
double correction_dim(const RopeConfig& config, double rotations) {
  return static_cast<double>(config.rope_dim) *
         std::log(static_cast<double>(config.original_seq_len) / (2.0 * std::numbers::pi * rotations)) /
         (2.0 * std::log(config.theta));
}

// x: [T, H, R], cos and sin: [max_seq_len, R/2], positions: i32 [T].
void check_rope(const char* op, const char* x_name, const Tensor& x, const Tensor& cos, const Tensor& sin,
                const Tensor& positions) {
  expect_float(op, x_name, x);
  expect_rank(op, x_name, x, 3);
  DSV3_CHECK(x.size(2) % 2 == 0, "{}: {} is {}, expected [T, H, R] with an even R (pairs are rotated)", op, x_name,
             x.describe());
  expect_rank(op, "cos", cos, 2);
  DSV3_CHECK(cos.size(1) * 2 == x.size(2), "{}: cos is {}, expected [max_seq_len, {}] for {} {}", op, cos.describe(),
             x.size(2) / 2, x_name, x.describe());
  expect_shape(op, "sin", sin, cos.shape());
  expect_dtype(op, "positions", positions, DType::i32);
  expect_shape(op, "positions", positions, Shape{x.size(0)});
  expect_same_dtype(op, {&cos, &sin});
  // CUDA also takes f32 tables for bf16 x (the rotation is computed in fp32 either way).
  if (x.device() != Device::cuda || cos.dtype() != DType::f32) expect_same_dtype(op, {&x, &cos});
  expect_same_device(op, {&x, &cos, &sin, &positions});
}

// The rotation of rope_forward (inverse = false) or rope_backward on CUDA; the positions are checked there.
// (Unused in a build without CUDA.)
[[maybe_unused]] void rope_on_cuda(const char* op, const Tensor& out, const char* in_name, const Tensor& in,
                                   const Tensor& cos, const Tensor& sin, const Tensor& positions, bool inverse,
                                   Stream stream) {
  cuda::rope_rotate(out.raw(), in.raw(), cuda_float(op, in_name, in), cos.raw(), sin.raw(), cuda_float(op, "cos", cos),
                    positions.data<std::int32_t>(), in.size(0), in.size(1), in.size(2) / 2, cos.size(0), inverse,
                    stream.handle, op);
}

}  // namespace

YarnRange yarn_correction_range(const RopeConfig& config) {
  check_config("yarn_correction_range", config);
  const auto clamp_dim = [&](double dim) {
    return std::clamp(static_cast<std::int64_t>(dim), std::int64_t{0}, config.rope_dim - 1);
  };
  return {.low = clamp_dim(std::floor(correction_dim(config, config.beta_fast))),
          .high = clamp_dim(std::ceil(correction_dim(config, config.beta_slow)))};
}

double yarn_mscale(double factor, double mscale) { return factor <= 1.0 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0; }

std::vector<double> rope_frequencies(const RopeConfig& config) {
  check_config("rope_frequencies", config);
  const std::int64_t pairs = config.rope_dim / 2;
  std::vector<double> frequency(static_cast<std::size_t>(pairs));
  for (std::int64_t i = 0; i < pairs; ++i) {
    frequency[i] = std::pow(config.theta, -2.0 * static_cast<double>(i) / static_cast<double>(config.rope_dim));
  }
  if (!config.yarn || config.factor <= 1.0) return frequency;

  // YaRN: pairs below `low` (many turns over the original context) keep their frequency, pairs above `high`
  // (less than one turn) are interpolated by 1/factor, a linear ramp blends the ones between.
  const YarnRange range = yarn_correction_range(config);
  const double low = static_cast<double>(range.low);
  // Both ends clamped to the same dimension would make the ramp divide by zero; widening it by 0.001 is the
  // usual guard (DeepSeek's and transformers' linear ramp) and turns it into a step at `low`.
  const double high = range.high == range.low ? low + 0.001 : static_cast<double>(range.high);
  for (std::int64_t i = 0; i < pairs; ++i) {
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    frequency[i] = frequency[i] / config.factor * ramp + frequency[i] * (1.0 - ramp);
  }
  return frequency;
}

void rope_table(const Tensor& cos, const Tensor& sin, const RopeConfig& config, double magnitude) {
  const char* op = "rope_table";
  check_config(op, config);
  expect_float(op, "cos", cos);
  expect_rank(op, "cos", cos, 2);
  DSV3_CHECK(cos.size(1) == config.rope_dim / 2, "{}: cos is {}, expected [max_seq_len, {}] (rope_dim {} / 2)", op,
             cos.describe(), config.rope_dim / 2, config.rope_dim);
  expect_shape(op, "sin", sin, cos.shape());
  expect_same_dtype(op, {&cos, &sin});
  expect_same_device(op, {&cos, &sin});
  DSV3_CHECK(std::isfinite(magnitude) && magnitude > 0.0, "{}: magnitude is {}, expected a finite number > 0", op,
             magnitude);
  if (cos.device() != Device::cpu) unsupported_device(op, cos.device());
  cpu::rope_table(cos, sin, rope_frequencies(config), magnitude);
}

void rope_forward(const Tensor& y, const Tensor& x, const Tensor& cos, const Tensor& sin, const Tensor& positions,
                  Stream stream) {
  const char* op = "rope_forward";
  check_rope(op, "x", x, cos, sin, positions);
  expect_shape(op, "y", y, x.shape());
  expect_same_dtype(op, {&x, &y});
  expect_same_device(op, {&x, &y});
  if (x.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, rope_on_cuda(op, y, "x", x, cos, sin, positions, false, stream));
  }
  cpu::rope_forward(y, x, cos, sin, positions);
}

void rope_backward(const Tensor& dx, const Tensor& dy, const Tensor& cos, const Tensor& sin, const Tensor& positions,
                   Stream stream) {
  const char* op = "rope_backward";
  check_rope(op, "dy", dy, cos, sin, positions);
  expect_shape(op, "dx", dx, dy.shape());
  expect_same_dtype(op, {&dy, &dx});
  expect_same_device(op, {&dy, &dx});
  if (dy.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, rope_on_cuda(op, dx, "dy", dy, cos, sin, positions, true, stream));
  }
  cpu::rope_backward(dx, dy, cos, sin, positions);
}

}  // namespace dsv3::ops
