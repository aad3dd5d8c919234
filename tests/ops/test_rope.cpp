#include "dsv3/ops/rope.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

#include <cmath>

using namespace dsv3;
using namespace dsv3::testing;

namespace {

struct RopeTable {
  Tensor cos;
  Tensor sin;
};

RopeTable make_table(const ops::RopeConfig& config, std::int64_t max_seq_len, DType dtype, double magnitude = 1.0) {
  RopeTable table{Tensor::empty(Shape{max_seq_len, config.rope_dim / 2}, dtype),
                  Tensor::empty(Shape{max_seq_len, config.rope_dim / 2}, dtype)};
  ops::rope_table(table.cos, table.sin, config, magnitude);
  return table;
}

// y[t, h, 2i], y[t, h, 2i+1] = (x0 + i·x1) · e^{i·pos_t·f_i}, the angle from the frequencies (not the table), f64.
Tensor naive_rope(const Tensor& x, const Tensor& positions, const std::vector<double>& frequency) {
  const std::int64_t tokens = x.size(0), heads = x.size(1), pairs = x.size(2) / 2;
  Tensor y = Tensor::empty(x.shape(), DType::f64);
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (std::int64_t h = 0; h < heads; ++h) {
      for (std::int64_t i = 0; i < pairs; ++i) {
        const std::int64_t at = (t * heads + h) * 2 * pairs + 2 * i;
        const double angle = value_at(positions, t) * frequency[i];
        const double x0 = value_at(x, at), x1 = value_at(x, at + 1);
        y.data<double>()[at] = x0 * std::cos(angle) - x1 * std::sin(angle);
        y.data<double>()[at + 1] = x0 * std::sin(angle) + x1 * std::cos(angle);
      }
    }
  }
  return y;
}

// Plain RoPE, f_i = theta^(−2i/rope_dim).
double plain_frequency(const ops::RopeConfig& config, std::int64_t i) {
  return std::pow(config.theta, -2.0 * static_cast<double>(i) / static_cast<double>(config.rope_dim));
}

}  // namespace

TEST_CASE("YaRN known values: the default correction range, the 671B softmax scale") {
  const ops::RopeConfig config;  // DeepSeek-V3 defaults
  const ops::YarnRange range = ops::yarn_correction_range(config);
  CHECK(range.low == 10);
  CHECK(range.high == 23);

  const double m = ops::yarn_mscale(40.0, 1.0);
  CHECK(m == doctest::Approx(0.1 * std::log(40.0) + 1.0).epsilon(1e-15));
  const double softmax_scale = std::pow(192.0, -0.5) * m * m;  // qk_head_dim 192
  CHECK(std::fabs(softmax_scale - 0.1352338) < 1e-7);
  CHECK(ops::yarn_mscale(1.0, 1.0) == 1.0);
  CHECK(ops::yarn_mscale(0.5, 0.707) == 1.0);
}

TEST_CASE("rope_frequencies: plain without YaRN, blended by the ramp with it") {
  const ops::RopeConfig yarn;
  for (const ops::RopeConfig& plain : {ops::RopeConfig{.factor = 1.0}, ops::RopeConfig{.yarn = false}}) {
    const std::vector<double> frequency = ops::rope_frequencies(plain);
    REQUIRE(frequency.size() == 32);
    for (std::int64_t i = 0; i < 32; ++i) CHECK(frequency[i] == doctest::Approx(plain_frequency(plain, i)));
  }

  const std::vector<double> frequency = ops::rope_frequencies(yarn);
  REQUIRE(frequency.size() == 32);
  CHECK(frequency[0] == doctest::Approx(1.0).epsilon(1e-15));  // ramp 0: the high-frequency end is unchanged
  for (std::int64_t i = 0; i <= 10; ++i) CHECK(frequency[i] == doctest::Approx(plain_frequency(yarn, i)));
  for (std::int64_t i = 23; i < 32; ++i) CHECK(frequency[i] == doctest::Approx(plain_frequency(yarn, i) / 40.0));
  CHECK(frequency[31] == doctest::Approx(plain_frequency(yarn, 31) / 40.0));  // ramp 1: divided by factor
  // Between low 10 and high 23 the ramp is linear: i = 15 has ramp 5/13.
  const double ramp = 5.0 / 13.0;
  CHECK(frequency[15] ==
        doctest::Approx(plain_frequency(yarn, 15) / 40.0 * ramp + plain_frequency(yarn, 15) * (1.0 - ramp)));
}

TEST_CASE("rope_frequencies: a rope_dim other than 64, and both ends of the range clamped to one dimension") {
  const ops::RopeConfig small{.rope_dim = 16, .factor = 4.0, .original_seq_len = 1};
  // corr(r) < 0 for both betas, so low = high = 0: the 0.001 guard makes the ramp a step at 0.
  const ops::YarnRange range = ops::yarn_correction_range(small);
  CHECK(range.low == 0);
  CHECK(range.high == 0);
  const std::vector<double> frequency = ops::rope_frequencies(small);
  REQUIRE(frequency.size() == 8);
  CHECK(frequency[0] == doctest::Approx(1.0));
  for (std::int64_t i = 1; i < 8; ++i) CHECK(frequency[i] == doctest::Approx(plain_frequency(small, i) / 4.0));

  // A huge original context: low = high = rope_dim − 1 and no pair is interpolated.
  const ops::RopeConfig long_context{.rope_dim = 16, .factor = 4.0, .original_seq_len = std::int64_t{1} << 60};
  CHECK(ops::yarn_correction_range(long_context).low == 15);
  CHECK(ops::yarn_correction_range(long_context).high == 15);
  const std::vector<double> unchanged = ops::rope_frequencies(long_context);
  for (std::int64_t i = 0; i < 8; ++i) CHECK(unchanged[i] == doctest::Approx(plain_frequency(long_context, i)));
}

TEST_CASE("rope_table holds cos and sin of p·f_i times the magnitude, both dtypes") {
  const ops::RopeConfig config{.rope_dim = 12, .factor = 8.0, .original_seq_len = 64};
  const std::vector<double> frequency = ops::rope_frequencies(config);
  for (DType dtype : {DType::f32, DType::f64}) {
    for (double magnitude : {1.0, 0.8}) {
      const std::int64_t rows = 300;
      const RopeTable table = make_table(config, rows, dtype, magnitude);
      Tensor expected_cos = Tensor::empty(table.cos.shape(), DType::f64);
      Tensor expected_sin = Tensor::empty(table.sin.shape(), DType::f64);
      for (std::int64_t p = 0; p < rows; ++p) {
        for (std::int64_t i = 0; i < 6; ++i) {
          expected_cos.data<double>()[p * 6 + i] = std::cos(static_cast<double>(p) * frequency[i]) * magnitude;
          expected_sin.data<double>()[p * 6 + i] = std::sin(static_cast<double>(p) * frequency[i]) * magnitude;
        }
      }
      const double tolerance = dtype == DType::f32 ? 1e-7 : 1e-15;
      DSV3_CHECK_CLOSE(compare(table.cos, expected_cos, 0.0, tolerance));
      DSV3_CHECK_CLOSE(compare(table.sin, expected_sin, 0.0, tolerance));
    }
  }
}

TEST_CASE("rope_forward rotates each pair by pos·f_i; in place equals out of place; both dtypes") {
  Rng rng(1);
  const ops::RopeConfig config;
  const std::vector<double> frequency = ops::rope_frequencies(config);
  for (DType dtype : {DType::f32, DType::f64}) {
    const RopeTable table = make_table(config, 5000, dtype);
    for (const Shape& shape : {Shape{1, 1, 64}, Shape{7, 3, 64}, Shape{33, 5, 64}}) {
      INFO("x ", shape.to_string(), " ", std::string(dtype_name(dtype)));
      const Tensor x = random_uniform(shape, dtype, rng);
      const Tensor positions = random_uniform(Shape{shape[0]}, DType::i32, rng, 0, 5000);
      const Tensor y = Tensor::empty(shape, dtype);
      ops::rope_forward(y, x, table.cos, table.sin, positions);
      const double tolerance = dtype == DType::f32 ? 1e-6 : 1e-12;
      DSV3_CHECK_CLOSE(compare(y, naive_rope(x, positions, frequency), tolerance, tolerance));

      const Tensor in_place = x.clone();
      ops::rope_forward(in_place, in_place, table.cos, table.sin, positions);
      DSV3_CHECK_CLOSE(compare(in_place, y, 0.0, 0.0));
    }
  }
}

TEST_CASE("rope: position 0 is the identity, rotation keeps each pair's norm, backward undoes forward") {
  Rng rng(2);
  const ops::RopeConfig config{.rope_dim = 10};
  const RopeTable table = make_table(config, 100, DType::f64);
  const Shape shape{6, 4, 10};
  const Tensor x = random_uniform(shape, DType::f64, rng);

  const Tensor at_zero = Tensor::empty(shape, DType::f64);
  ops::rope_forward(at_zero, x, table.cos, table.sin, Tensor::zeros(Shape{6}, DType::i32));
  DSV3_CHECK_CLOSE(compare(at_zero, x, 0.0, 0.0));

  const Tensor positions = from_values(Shape{6}, DType::i32, {0, 1, 2, 50, 98, 99});
  const Tensor y = Tensor::empty(shape, DType::f64);
  ops::rope_forward(y, x, table.cos, table.sin, positions);
  for (std::int64_t pair = 0; pair < x.numel() / 2; ++pair) {
    const double before = std::hypot(x.data<double>()[2 * pair], x.data<double>()[2 * pair + 1]);
    const double after = std::hypot(y.data<double>()[2 * pair], y.data<double>()[2 * pair + 1]);
    CHECK(after == doctest::Approx(before).epsilon(1e-14));
  }

  // With magnitude 1, backward (the transposed rotation) is the inverse rotation; dx may alias dy.
  const Tensor restored = y.clone();
  ops::rope_backward(restored, restored, table.cos, table.sin, positions);
  DSV3_CHECK_CLOSE(compare(restored, x, 1e-14, 1e-14));
}

TEST_CASE("rope_backward: f64 gradient check with respect to x, with and without a magnitude") {
  Rng rng(3);
  const ops::RopeConfig config{.rope_dim = 8, .factor = 4.0, .original_seq_len = 16};
  for (double magnitude : {1.0, 1.3}) {
    const RopeTable table = make_table(config, 40, DType::f64, magnitude);
    const Tensor x = random_uniform(Shape{5, 3, 8}, DType::f64, rng);
    const Tensor positions = from_values(Shape{5}, DType::i32, {39, 0, 7, 7, 21});
    const Tensor dy = random_uniform(x.shape(), DType::f64, rng);
    const Tensor dx = Tensor::empty(x.shape(), DType::f64);
    ops::rope_backward(dx, dy, table.cos, table.sin, positions);
    const auto forward = [&] {
      Tensor y = Tensor::empty(x.shape(), DType::f64);
      ops::rope_forward(y, x, table.cos, table.sin, positions);
      return y;
    };
    DSV3_CHECK_CLOSE(check_gradients(forward, dy, {x}, {dx}));
  }
}

TEST_CASE("rope ops reject bad configs, shapes, dtypes and positions with the op in the message") {
  const ops::RopeConfig config{.rope_dim = 8};
  const RopeTable table = make_table(config, 16, DType::f32);
  const Tensor x = Tensor::zeros(Shape{3, 2, 8}, DType::f32);
  const Tensor y = Tensor::zeros(Shape{3, 2, 8}, DType::f32);
  const Tensor positions = from_values(Shape{3}, DType::i32, {0, 1, 2});
  CHECK_THROWS_WITH_AS(ops::rope_forward(y, x, table.cos, table.sin, from_values(Shape{3}, DType::i32, {0, 16, 2})),
                       doctest::Contains("rope_forward: positions[1] is 16, expected a position in [0, 16)"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::rope_backward(y, x, table.cos, table.sin, from_values(Shape{3}, DType::i32, {0, 1, -3})),
                       doctest::Contains("rope_backward: positions[2] is -3"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::rope_forward(y, x, table.cos, table.sin, from_values(Shape{3}, DType::i64, {0, 1, 2})),
                       doctest::Contains("rope_forward: positions is i64[3]@cpu, expected dtype i32"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::rope_forward(y, x, table.cos, table.sin, from_values(Shape{2}, DType::i32, {0, 1})),
                       doctest::Contains("rope_forward: positions is i32[2]@cpu, expected shape [3]"), dsv3::Error);
  const Tensor x_odd = Tensor::zeros(Shape{3, 2, 7}, DType::f32);
  CHECK_THROWS_WITH_AS(ops::rope_forward(x_odd, x_odd, table.cos, table.sin, positions),
                       doctest::Contains("rope_forward: x is f32[3, 2, 7]@cpu, expected [T, H, R] with an even R"),
                       dsv3::Error);
  const Tensor x_wide = Tensor::zeros(Shape{3, 2, 10}, DType::f32);
  CHECK_THROWS_WITH_AS(ops::rope_forward(x_wide, x_wide, table.cos, table.sin, positions),
                       doctest::Contains("rope_forward: cos is f32[16, 4]@cpu, expected [max_seq_len, 5]"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::rope_forward(Tensor::zeros(Shape{3, 2, 8}, DType::f64), x, table.cos, table.sin, positions),
                       doctest::Contains("rope_forward: tensors of different dtypes"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::rope_table(table.cos, table.sin, ops::RopeConfig{.rope_dim = 10}),
                       doctest::Contains("rope_table: cos is f32[16, 4]@cpu, expected [max_seq_len, 5]"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::rope_frequencies(ops::RopeConfig{.rope_dim = 7}),
                       doctest::Contains("rope_frequencies: rope_dim is 7, expected an even number"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::yarn_correction_range(ops::RopeConfig{.beta_fast = 1.0, .beta_slow = 32.0}),
                       doctest::Contains("yarn_correction_range: beta_fast is 1 and beta_slow 32"), dsv3::Error);
}
