// CUDA kernels of ops/optim.hpp. Arguments are checked by the dispatch.
#pragma once

#include "dsv3/ops/cuda/backend.hpp"

namespace dsv3::cuda {

// The per-step scalars of the update, computed on the host in double as the CPU does.
struct AdamWScalars {
  double decay;  // 1 − lr·weight_decay
  double beta1, beta2;
  double step_size;              // lr / (1 − β1^step)
  double bias_correction2_sqrt;  // sqrt(1 − β2^step)
  double eps;
};

// f32 only: the optimizer updates the fp32 master weights and states. n elements each.
void adamw_step(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, const AdamWScalars& scalars,
                std::int64_t n, void* stream);

struct FloatBuffer {
  const void* data;
  Float type;
  std::int64_t n;
};
// Σ over the buffers of Σ x², in double, read back to the host (waits for the stream). Each buffer is summed in
// fixed blocks and the block sums added in a fixed order: the same bits on every run.
double sum_of_squares(const FloatBuffer* buffers, std::int64_t count, void* stream);

}  // namespace dsv3::cuda
