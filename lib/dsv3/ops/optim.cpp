#include "dsv3/ops/optim.hpp"

#include "dsv3/ops/cpu/optim.hpp"

#include <cmath>
#include <string>

namespace dsv3::ops {

void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                const AdamWOptions& options, Stream) {
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
  if (param.device() != Device::cpu) unsupported_device(op, param.device());
  cpu::adamw_step(param, grad, exp_avg, exp_avg_sq, options);
}

double sum_of_squares(const Tensor& x, Stream) {
  expect_float("sum_of_squares", "x", x);
  if (x.device() != Device::cpu) unsupported_device("sum_of_squares", x.device());
  return cpu::sum_of_squares(x);
}

double global_l2_norm(std::span<const Tensor> tensors, Stream) {
  const char* op = "global_l2_norm";
  double total = 0.0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::string name = fmt::format("tensors[{}]", i);
    expect_float(op, name.c_str(), tensors[i]);
    if (tensors[i].device() != Device::cpu) unsupported_device(op, tensors[i].device());
    total += cpu::sum_of_squares(tensors[i]);
  }
  return std::sqrt(total);
}

}  // namespace dsv3::ops
