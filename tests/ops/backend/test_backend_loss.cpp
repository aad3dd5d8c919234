#include "dsv3/ops/elementwise.hpp"
#include "dsv3/ops/loss.hpp"

#include "backend_ops.hpp"

#include <doctest/doctest.h>

#include <random>
#include <vector>

using namespace dsv3;
using namespace dsv3::testing;
using namespace dsv3::testing::backend;

namespace {

// Targets in [0, V), about one row in five ignored.
Tensor random_targets(std::int64_t rows, std::int64_t classes, DType dtype, Rng& rng) {
  Tensor targets = random_uniform(Shape{rows}, DType::i64, rng, 0, static_cast<double>(classes));
  std::uniform_int_distribution<int> fifth(0, 4);
  for (std::int64_t row = 0; row < rows; ++row) {
    if (fifth(rng) == 0) targets.data<std::int64_t>()[row] = ops::kIgnoreIndex;
  }
  const Tensor converted = Tensor::empty(targets.shape(), dtype);
  ops::convert(converted, targets);
  return converted;
}

}  // namespace

TEST_CASE("backend loss: cross-entropy forward and backward, f32 statistics, ignored rows, valid-target count") {
  Rng rng(81);
  const std::int64_t row_counts[] = {1, 7, 129};
  const std::int64_t class_counts[] = {1, 3, 1000, 32003, 32768};
  for (const DType dtype : kDeviceFloatTypes) {
    for (const std::int64_t rows : row_counts) {
      for (const std::int64_t classes : class_counts) {
        const DType index_dtype = classes % 2 == 0 ? DType::i64 : DType::i32;
        const std::string where =
            fmt::format("{} logits [{}, {}], {} targets", dtype_name(dtype), rows, classes, dtype_name(index_dtype));
        const Tensor logits = random_representable(Shape{rows, classes}, dtype, rng, -8.0, 8.0);
        const Tensor targets = random_targets(rows, classes, index_dtype, rng);
        const DeviceTensor device_logits = DeviceTensor::upload(logits, dtype);
        const DeviceTensor device_targets = DeviceTensor::upload(targets);

        const Tensor expected_loss = Tensor::empty(Shape{}, DType::f32);
        const Tensor expected_lse = Tensor::empty(Shape{rows}, DType::f32);
        ops::cross_entropy_forward(expected_loss, expected_lse, logits, targets);
        const DeviceTensor loss = DeviceTensor::poisoned(Shape{}, DType::f32);
        const DeviceTensor lse = DeviceTensor::poisoned(Shape{rows}, DType::f32);
        ops::cross_entropy_forward(loss, lse, device_logits, device_targets);
        // fp32 statistics whatever the logits' dtype: only the summation order differs from the CPU's.
        check_output("cross_entropy_forward lse " + where, lse, expected_lse, kNmseF32);
        check_output("cross_entropy_forward loss " + where, loss, expected_loss, kNmseF32);
        const DeviceTensor loss_again = DeviceTensor::poisoned(Shape{}, DType::f32);
        ops::cross_entropy_forward(loss_again, lse, device_logits, device_targets);
        check_output("cross_entropy_forward loss rerun " + where, loss_again, loss.download(), 0.0);

        const std::int64_t valid = ops::count_valid_targets(targets);
        CHECK(ops::count_valid_targets(device_targets) == valid);

        // Backward from the CPU's lse, so that both sides use the same statistics.
        const double dloss = valid > 0 ? 1.0 / static_cast<double>(valid) : 0.5;
        const Tensor expected_dlogits = Tensor::empty(Shape{rows, classes}, DType::f32);
        ops::cross_entropy_backward(expected_dlogits, logits, expected_lse, targets, dloss);
        const DeviceTensor dlogits = DeviceTensor::poisoned(Shape{rows, classes}, dtype);
        ops::cross_entropy_backward(dlogits, device_logits, DeviceTensor::upload(expected_lse), device_targets, dloss);
        check_output("cross_entropy_backward " + where, dlogits, expected_dlogits, nmse_threshold(dtype));
      }
    }
  }
}

TEST_CASE("backend loss: a target outside [0, V) is the CPU's error; statistics must be f32") {
  Rng rng(82);
  const Tensor logits = random_representable(Shape{3, 5}, DType::f32, rng);
  const Tensor lse = Tensor::empty(Shape{3}, DType::f32);
  const Tensor loss = Tensor::empty(Shape{}, DType::f32);
  const DeviceTensor device_logits = DeviceTensor::upload(logits);
  const DeviceTensor device_lse = DeviceTensor::poisoned(Shape{3}, DType::f32);
  const DeviceTensor device_loss = DeviceTensor::poisoned(Shape{}, DType::f32);
  for (const DType index_dtype : {DType::i32, DType::i64}) {
    for (const std::vector<double>& bad :
         {std::vector<double>{0, 1, 5}, std::vector<double>{-1, 1, 2}, std::vector<double>{0, -100, -101}}) {
      const Tensor targets = from_values(Shape{3}, index_dtype, bad);
      const DeviceTensor device_targets = DeviceTensor::upload(targets);
      const std::string forward_error =
          cpu_error_message([&] { ops::cross_entropy_forward(loss, lse, logits, targets); });
      CHECK_THROWS_WITH_AS(ops::cross_entropy_forward(device_loss, device_lse, device_logits, device_targets),
                           forward_error.c_str(), dsv3::Error);
      const std::string backward_error =
          cpu_error_message([&] { ops::cross_entropy_backward(logits.clone(), logits, lse, targets, 1.0); });
      const DeviceTensor dlogits = DeviceTensor::poisoned(Shape{3, 5}, DType::f32);
      CHECK_THROWS_WITH_AS(ops::cross_entropy_backward(dlogits, device_logits, device_lse, device_targets, 1.0),
                           backward_error.c_str(), dsv3::Error);
    }
  }
  const DeviceTensor bf16_logits = DeviceTensor::upload(logits, DType::bf16);
  const DeviceTensor bf16_lse = DeviceTensor::poisoned(Shape{3}, DType::bf16);
  const DeviceTensor targets = DeviceTensor::upload(from_values(Shape{3}, DType::i32, {0, 1, 2}));
  CHECK_THROWS_WITH_AS(ops::cross_entropy_forward(device_loss, bf16_lse, bf16_logits, targets),
                       doctest::Contains("cross_entropy_forward: lse is bf16[3]@cuda, expected dtype f32"),
                       dsv3::Error);
}
