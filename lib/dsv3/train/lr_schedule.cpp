#include "dsv3/train/lr_schedule.hpp"

#include "dsv3/core/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numbers>

namespace dsv3::train {

DecayType parse_decay_type(const std::string& name) {
  if (name == "linear") return DecayType::linear;
  if (name == "cosine") return DecayType::cosine;
  if (name == "sqrt") return DecayType::sqrt;
  fail("lr_scheduler.decay_type = '{}' is not one of linear, cosine, sqrt", name);
}

LrSchedule::LrSchedule(const LrScheduleConfig& config) : config_(config) {
  DSV3_CHECK(config.training_steps > 0, "training.steps = {} must be positive", config.training_steps);
  DSV3_CHECK(config.warmup_steps >= 0 && config.warmup_steps <= config.training_steps,
             "lr_scheduler.warmup_steps = {} must be in [0, training.steps = {}]", config.warmup_steps,
             config.training_steps);
  DSV3_CHECK(config.decay_ratio <= 1.0, "lr_scheduler.decay_ratio = {} must be at most 1 (or negative: decay after warmup)",
             config.decay_ratio);
  DSV3_CHECK(config.min_lr_factor >= 0.0 && config.min_lr_factor <= 1.0,
             "lr_scheduler.min_lr_factor = {} must be in [0, 1]", config.min_lr_factor);
  decay_steps_ = config.decay_ratio < 0
                     ? config.training_steps - config.warmup_steps
                     : static_cast<std::int64_t>(std::llround(static_cast<double>(config.training_steps) * config.decay_ratio));
  // As torchtitan: a decay that does not fit after the warmup is shortened to the steps left, with a warning.
  if (config.warmup_steps + decay_steps_ > config.training_steps) {
    const std::int64_t fitting = config.training_steps - config.warmup_steps;
    adjustment_ = fmt::format(
        "lr_scheduler: warmup_steps ({}) + decay steps ({} = round(steps · decay_ratio)) exceed training.steps ({}); "
        "decaying over {} steps instead",
        config.warmup_steps, decay_steps_, config.training_steps, fitting);
    decay_steps_ = fitting;
  }
  stable_steps_ = config.training_steps - config.warmup_steps - decay_steps_;
}

double LrSchedule::factor(std::int64_t step) const {
  if (step < config_.warmup_steps) {
    // Step s (0-based) trains with (s + 1)/warmup, so the first step already has a non-zero rate.
    return static_cast<double>(step + 1) / static_cast<double>(config_.warmup_steps);
  }
  const std::int64_t decay_start = config_.warmup_steps + stable_steps_;
  if (step < decay_start) return 1.0;
  const double progress =
      std::min(1.0, static_cast<double>(step + 1 - decay_start) / static_cast<double>(std::max<std::int64_t>(decay_steps_, 1)));
  double remaining = 0.0;
  switch (config_.decay_type) {
    case DecayType::linear: remaining = 1.0 - progress; break;
    case DecayType::sqrt: remaining = 1.0 - std::sqrt(progress); break;
    case DecayType::cosine: remaining = 0.5 * (1.0 + std::cos(std::numbers::pi * progress)); break;
  }
  return config_.min_lr_factor + (1.0 - config_.min_lr_factor) * remaining;
}

}  // namespace dsv3::train
