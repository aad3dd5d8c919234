#include "dsv3/train/optimizer.hpp"

#include "dsv3/ops/elementwise.hpp"
#include "dsv3/ops/optim.hpp"

#include <span>

namespace dsv3::train {

double clip_grad_norm(const Tensor& grads, double max_norm) {
  const double norm = ops::global_l2_norm(std::span(&grads, 1));
  clip_to_max_norm(grads, norm, max_norm);
  return norm;
}

void clip_to_max_norm(const Tensor& grads, double norm, double max_norm) {
  if (max_norm <= 0.0) return;
  const double coefficient = max_norm / (norm + 1e-6);
  if (coefficient < 1.0) ops::scale(grads, coefficient);
}

AdamW::AdamW(const Tensor& params, const Tensor& grads, const AdamWConfig& config)
    : params_(params),
      grads_(grads),
      exp_avg_(Tensor::zeros(params.shape(), params.dtype(), params.device())),
      exp_avg_sq_(Tensor::zeros(params.shape(), params.dtype(), params.device())),
      config_(config) {}

void AdamW::step(double lr) {
  ++steps_taken_;
  ops::adamw_step(params_, grads_, exp_avg_, exp_avg_sq_,
                  {.lr = lr,
                   .beta1 = config_.beta1,
                   .beta2 = config_.beta2,
                   .eps = config_.eps,
                   .weight_decay = config_.weight_decay,
                   .step = steps_taken_});
}

}  // namespace dsv3::train
