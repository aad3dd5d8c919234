#include "dsv3/ops/rope.hpp"

#include "backend_ops.hpp"

#include <doctest/doctest.h>

#include <vector>

using namespace dsv3;
using namespace dsv3::testing;
using namespace dsv3::testing::backend;

namespace {

constexpr std::int64_t kTableRows = 200;

struct RopeCase {
  std::int64_t tokens, heads, rope_dim;
};

}  // namespace

TEST_CASE("backend rope: forward, backward and in place, tables in x's dtype or f32") {
  Rng rng(31);
  const RopeCase cases[] = {{1, 1, 2}, {7, 3, 64}, {129, 2, 16}, {5, 1, 6}};
  for (const RopeCase& c : cases) {
    const Shape shape{c.tokens, c.heads, c.rope_dim};
    const Tensor cos = Tensor::empty(Shape{kTableRows, c.rope_dim / 2}, DType::f32);
    const Tensor sin = Tensor::empty(cos.shape(), DType::f32);
    ops::rope_table(cos, sin, ops::RopeConfig{.rope_dim = c.rope_dim});
    const Tensor positions = random_uniform(Shape{c.tokens}, DType::i32, rng, 0, kTableRows);
    const DeviceTensor device_positions = DeviceTensor::upload(positions);
    for (const DType dtype : kDeviceFloatTypes) {
      const std::vector<DType> table_dtypes =
          dtype == DType::f32 ? std::vector<DType>{DType::f32} : std::vector<DType>{dtype, DType::f32};
      for (const DType table_dtype : table_dtypes) {
        const Tensor table_cos = representable(cos, table_dtype), table_sin = representable(sin, table_dtype);
        const DeviceTensor device_cos = DeviceTensor::upload(table_cos, table_dtype);
        const DeviceTensor device_sin = DeviceTensor::upload(table_sin, table_dtype);
        const std::string where =
            fmt::format("{} x, {} tables, {}", dtype_name(dtype), dtype_name(table_dtype), shape.to_string());
        const Tensor x = random_representable(shape, dtype, rng);
        const DeviceTensor device_x = DeviceTensor::upload(x, dtype);

        const Tensor expected_y = Tensor::empty(shape, DType::f32);
        ops::rope_forward(expected_y, x, table_cos, table_sin, positions);
        const DeviceTensor y = DeviceTensor::poisoned(shape, dtype);
        ops::rope_forward(y, device_x, device_cos, device_sin, device_positions);
        check_output("rope_forward " + where, y, expected_y, nmse_threshold(dtype));

        const Tensor expected_dx = Tensor::empty(shape, DType::f32);
        ops::rope_backward(expected_dx, x, table_cos, table_sin, positions);
        const DeviceTensor dx = DeviceTensor::poisoned(shape, dtype);
        ops::rope_backward(dx, device_x, device_cos, device_sin, device_positions);
        check_output("rope_backward " + where, dx, expected_dx, nmse_threshold(dtype));

        const DeviceTensor in_place = DeviceTensor::upload(x, dtype);
        ops::rope_forward(in_place, in_place, device_cos, device_sin, device_positions);
        check_output("rope_forward in place " + where, in_place, expected_y, nmse_threshold(dtype));
      }
    }
  }
}

TEST_CASE("backend rope: a position outside the table is the CPU's error, and nothing is written") {
  const Shape shape{3, 2, 8};
  const Tensor cos = Tensor::empty(Shape{16, 4}, DType::f32);
  const Tensor sin = Tensor::empty(cos.shape(), DType::f32);
  ops::rope_table(cos, sin, ops::RopeConfig{.rope_dim = 8});
  Rng rng(32);
  const Tensor x = random_representable(shape, DType::f32, rng);
  for (const std::vector<double>& bad : {std::vector<double>{0, 16, 2}, std::vector<double>{0, 1, -3}}) {
    const Tensor positions = from_values(Shape{3}, DType::i32, bad);
    const std::string expected = cpu_error_message([&] { ops::rope_forward(x.clone(), x, cos, sin, positions); });
    const DeviceTensor device_x = DeviceTensor::upload(x);
    CHECK_THROWS_WITH_AS(ops::rope_forward(device_x, device_x, DeviceTensor::upload(cos), DeviceTensor::upload(sin),
                                           DeviceTensor::upload(positions)),
                         expected.c_str(), dsv3::Error);
    check_output("rope_forward refused", device_x, x, 0.0);
  }
}

TEST_CASE("backend rope: f32 x with bf16 tables is refused") {
  const DeviceTensor x = DeviceTensor::poisoned(Shape{1, 1, 4}, DType::f32);
  const DeviceTensor table = DeviceTensor::poisoned(Shape{4, 2}, DType::bf16);
  const DeviceTensor positions = DeviceTensor::upload(from_values(Shape{1}, DType::i32, {0}));
  CHECK_THROWS_WITH_AS(ops::rope_forward(x, x, table, table, positions),
                       doctest::Contains("rope_forward: tensors of different dtypes"), dsv3::Error);
}
