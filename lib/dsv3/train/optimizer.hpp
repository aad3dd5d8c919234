// The optimizer step over the flat parameter arena (REFERENCE.md §3): gradient clipping by global L2 norm, then
// AdamW with decoupled weight decay on every parameter, one sweep over one buffer.
#pragma once

#include "dsv3/tensor/tensor.hpp"

#include <cstdint>

namespace dsv3::train {

// Scales `grads` by max_norm / (norm + 1e-6) when their L2 norm exceeds max_norm (torch.nn.utils.clip_grad_norm_);
// max_norm ≤ 0: no clipping. Returns the norm before clipping. `grads` holds every gradient of the step, already
// reduced over the data-parallel ranks, so the norm is global.
double clip_grad_norm(const Tensor& grads, double max_norm);
// The scaling of clip_grad_norm for gradients whose global `norm` is already known (sharded gradients: the norm
// is reduced over the ranks, each scales its own shard).
void clip_to_max_norm(const Tensor& grads, double norm, double max_norm);

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

class AdamW {
 public:
  // Moments of the same shape, dtype and device as `params`, zero-initialised.
  AdamW(const Tensor& params, const Tensor& grads, const AdamWConfig& config);

  // One update of `params` from `grads` at learning rate `lr`.
  void step(double lr);
  std::int64_t steps_taken() const { return steps_taken_; }

  // The moments, laid out as params (checkpoints write and restore them), and the step count behind the bias
  // corrections, restored with them.
  const Tensor& exp_avg() const { return exp_avg_; }
  const Tensor& exp_avg_sq() const { return exp_avg_sq_; }
  void restore_steps_taken(std::int64_t steps) { steps_taken_ = steps; }

 private:
  Tensor params_;
  Tensor grads_;
  Tensor exp_avg_;
  Tensor exp_avg_sq_;
  AdamWConfig config_;
  std::int64_t steps_taken_ = 0;
};

}  // namespace dsv3::train
