// Optimizer arithmetic: AdamW over flat buffers and the pieces of gradient clipping by global norm.
#pragma once

#include "dsv3/ops/common.hpp"

#include <span>

namespace dsv3::ops {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  std::int64_t step = 1;  // 1-based step count, for bias correction
};

// Decoupled weight decay then the Adam update, as torch.optim.AdamW:
// p −= lr·wd·p;  m = β1 m + (1−β1) g;  v = β2 v + (1−β2) g²;  p −= lr · m̂ / (√v̂ + eps).
// param, grad, exp_avg, exp_avg_sq: same shape and dtype (f32 or f64 on the CPU, f32 on CUDA).
void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                const AdamWOptions& options, Stream stream = {});

// Σ x² of one tensor, accumulated in f64 in a fixed order (the same bits on every run). For a CUDA tensor the
// result is read back to the host: the call waits for the stream.
double sum_of_squares(const Tensor& x, Stream stream = {});
// sqrt(Σ over tensors of Σ x²): the L2 norm of this rank's part of the gradients (ranks all-reduce the squares).
// CUDA tensors are summed on the device with a single read-back at the end.
double global_l2_norm(std::span<const Tensor> tensors, Stream stream = {});

}  // namespace dsv3::ops
