// Learning-rate schedule: linear warmup, constant, then decay (linear, cosine or sqrt) to min_lr_factor,
// as torchtitan's warmup-stable-decay (REFERENCE.md §3).
#pragma once

#include <cstdint>
#include <string>

namespace dsv3::train {

enum class DecayType { linear, cosine, sqrt };
DecayType parse_decay_type(const std::string& name);  // "linear", "cosine", "sqrt"; else an error naming the key

struct LrScheduleConfig {
  std::int64_t training_steps = 10;
  std::int64_t warmup_steps = 2;
  double decay_ratio = 0.8;  // decay over round(training_steps · decay_ratio) steps; < 0: all steps after warmup
  DecayType decay_type = DecayType::linear;
  double min_lr_factor = 0.0;
};

class LrSchedule {
 public:
  explicit LrSchedule(const LrScheduleConfig& config);
  // The factor multiplying the base learning rate at 0-based optimizer step `step`.
  double factor(std::int64_t step) const;

  std::int64_t warmup_steps() const { return config_.warmup_steps; }
  std::int64_t decay_steps() const { return decay_steps_; }
  std::int64_t stable_steps() const { return stable_steps_; }
  // Why the decay is shorter than decay_ratio asks (it did not fit after the warmup); empty when it is not.
  const std::string& adjustment() const { return adjustment_; }

 private:
  LrScheduleConfig config_;
  std::int64_t decay_steps_;
  std::int64_t stable_steps_;
  std::string adjustment_;
};

}  // namespace dsv3::train
