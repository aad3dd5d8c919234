#include "dsv3/train/lr_schedule.hpp"

#include "dsv3/core/error.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <numbers>

using namespace dsv3;
using namespace dsv3::train;

TEST_CASE("the debug schedule: warmup 2, linear decay over 8 of 10 steps to 0") {
  const LrSchedule schedule({.training_steps = 10, .warmup_steps = 2, .decay_ratio = 0.8});
  CHECK(schedule.decay_steps() == 8);
  CHECK(schedule.stable_steps() == 0);
  CHECK(schedule.factor(0) == doctest::Approx(0.5));
  CHECK(schedule.factor(1) == doctest::Approx(1.0));
  CHECK(schedule.factor(2) == doctest::Approx(1.0 - 1.0 / 8));
  CHECK(schedule.factor(9) == doctest::Approx(0.0));
}

TEST_CASE("warmup, stable, cosine decay to min_lr_factor") {
  const LrSchedule schedule({.training_steps = 100, .warmup_steps = 10, .decay_ratio = 0.5,
                             .decay_type = DecayType::cosine, .min_lr_factor = 0.1});
  CHECK(schedule.stable_steps() == 40);
  CHECK(schedule.factor(9) == doctest::Approx(1.0));
  CHECK(schedule.factor(30) == 1.0);
  CHECK(schedule.factor(49) == 1.0);
  // halfway through the decay: cos(π/2) = 0 → 0.1 + 0.9·0.5
  CHECK(schedule.factor(74) == doctest::Approx(0.1 + 0.9 * 0.5));
  CHECK(schedule.factor(99) == doctest::Approx(0.1));
  const LrSchedule sqrt_schedule({.training_steps = 4, .warmup_steps = 0, .decay_ratio = 1.0, .decay_type = DecayType::sqrt});
  CHECK(sqrt_schedule.factor(0) == doctest::Approx(1.0 - std::sqrt(0.25)));
}

TEST_CASE("a decay that does not fit after the warmup is shortened to the steps left, with a note") {
  const LrSchedule schedule({.training_steps = 10, .warmup_steps = 5, .decay_ratio = 0.8});
  CHECK(schedule.decay_steps() == 5);
  CHECK(schedule.stable_steps() == 0);
  CHECK(schedule.adjustment().find("decaying over 5 steps instead") != std::string::npos);
  CHECK(schedule.factor(4) == doctest::Approx(1.0));
  CHECK(schedule.factor(9) == doctest::Approx(0.0));
  CHECK(LrSchedule({.training_steps = 10, .warmup_steps = 2, .decay_ratio = 0.8}).adjustment().empty());
}

TEST_CASE("impossible schedules name the key") {
  CHECK_THROWS_WITH_AS(LrSchedule({.training_steps = 10, .warmup_steps = 11}),
                       doctest::Contains("lr_scheduler.warmup_steps = 11"), Error);
  CHECK_THROWS_WITH_AS(LrSchedule({.training_steps = 0}), doctest::Contains("training.steps = 0"), Error);
  CHECK_THROWS_WITH_AS(parse_decay_type("exp"), doctest::Contains("lr_scheduler.decay_type = 'exp'"), Error);
}
