#include "dsv3/ops/optim.hpp"

#include "dsv3/ops/cpu/optim.hpp"
#include "dsv3/ops/cuda/optim.hpp"
#include "dsv3/ops/cuda_dispatch.hpp"

#include <cmath>
#include <string>
#include <vector>

namespace dsv3::ops {

namespace {

// The per-step scalars of the CUDA update, in double as the CPU reference computes them (unused without CUDA).
[[maybe_unused]] cuda::AdamWScalars adamw_scalars(const AdamWOptions& options) {
  const double step = static_cast<double>(options.step);
  return {.decay = 1.0 - options.lr * options.weight_decay,
          .beta1 = options.beta1,
          .beta2 = options.beta2,
          .step_size = options.lr / (1.0 - std::pow(options.beta1, step)),
          .bias_correction2_sqrt = std::sqrt(1.0 - std::pow(options.beta2, step)),
          .eps = options.eps};
}

// Σ x² over tensors already checked: the CUDA ones in one pass on the device with one read-back, not one per
// tensor; the CPU ones by the reference.
double total_sum_of_squares(const char* op, std::span<const Tensor> tensors, Stream stream) {
  double total = 0.0;
  std::vector<cuda::FloatBuffer> device_buffers;
  for (const Tensor& tensor : tensors) {
    if (tensor.device() == Device::cuda) {
      device_buffers.push_back({tensor.raw(), cuda_float(op, "x", tensor), tensor.numel()});
    } else {
      total += cpu::sum_of_squares(tensor);
    }
  }
  if (!device_buffers.empty()) {
    double device_total = 0.0;
    DSV3_ON_CUDA(op, device_total = cuda::sum_of_squares(
                         device_buffers.data(), static_cast<std::int64_t>(device_buffers.size()), stream.handle));
    total += device_total;
  }
  return total;
}

}  // namespace

void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                const AdamWOptions& options, Stream stream) {
  const char* op = "adamw_step";
  expect_float(op, "param", param);
  expect_shape(op, "grad", grad, param.shape());
  expect_shape(op, "exp_avg", exp_avg, param.shape());
  expect_shape(op, "exp_avg_sq", exp_avg_sq, param.shape());
  expect_same_dtype(op, {&param, &grad, &exp_avg, &exp_avg_sq});
  expect_same_device(op, {&param, &grad, &exp_avg, &exp_avg_sq});
  // The ranges torch.optim.AdamW accepts (written so that NaN fails too).
  DSV3_CHECK(options.step >= 1, "{}: step is {}, expected >= 1 (bias correction counts steps from 1)", op,
             options.step);
  DSV3_CHECK(options.lr >= 0.0 && options.eps >= 0.0 && options.weight_decay >= 0.0,
             "{}: lr {}, eps {} and weight_decay {} must be >= 0", op, options.lr, options.eps,
             options.weight_decay);
  DSV3_CHECK(options.beta1 >= 0.0 && options.beta1 < 1.0 && options.beta2 >= 0.0 && options.beta2 < 1.0,
             "{}: betas ({}, {}) must lie in [0, 1)", op, options.beta1, options.beta2);
  if (param.device() == Device::cuda) {
    DSV3_CHECK(param.dtype() == DType::f32,
               "{}: param is {}, expected f32: on CUDA the optimizer updates fp32 master weights and states", op,
               param.describe());
    return DSV3_ON_CUDA(
        op, cuda::adamw_step(param.data<float>(), grad.data<float>(), exp_avg.data<float>(), exp_avg_sq.data<float>(),
                             adamw_scalars(options), param.numel(), stream.handle));
  }
  cpu::adamw_step(param, grad, exp_avg, exp_avg_sq, options);
}

double sum_of_squares(const Tensor& x, Stream stream) {
  const char* op = "sum_of_squares";
  expect_float(op, "x", x);
  return total_sum_of_squares(op, std::span<const Tensor>(&x, 1), stream);
}

double global_l2_norm(std::span<const Tensor> tensors, Stream stream) {
  const char* op = "global_l2_norm";
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::string name = fmt::format("tensors[{}]", i);
    expect_float(op, name.c_str(), tensors[i]);
  }
  return std::sqrt(total_sum_of_squares(op, tensors, stream));
}

}  // namespace dsv3::ops
