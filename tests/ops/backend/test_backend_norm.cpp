#include "dsv3/ops/norm.hpp"

#include "backend_ops.hpp"

#include <doctest/doctest.h>

using namespace dsv3;
using namespace dsv3::testing;
using namespace dsv3::testing::backend;

namespace {

// Odd row counts and widths for the tails, one width that packs (192), one row count above a dw row chunk (256).
const std::int64_t kRows[] = {1, 7, 129, 300};
const std::int64_t kDims[] = {1, 7, 192, 513};

}  // namespace

TEST_CASE("backend norm: rmsnorm forward and backward, rstd in f32, dw accumulated the same way every run") {
  Rng rng(21);
  for (const DType dtype : kDeviceFloatTypes) {
    for (const std::int64_t rows : kRows) {
      for (const std::int64_t dim : kDims) {
        // With one column, dx = r·w·dy·eps/(x² + eps): everything but eps cancels, so a larger eps keeps the
        // comparison about the kernel rather than about the last bits of r.
        const double eps = dim == 1 ? 0.25 : 1e-6;
        const Shape shape = rows == 7 ? Shape{7, 1, dim} : Shape{rows, dim};  // rank 3 once: rows = numel / D
        const std::string where = fmt::format("{} {}", dtype_name(dtype), shape.to_string());
        const Tensor x = random_representable(shape, dtype, rng);
        const Tensor w = random_representable(Shape{dim}, dtype, rng, 0.5, 1.5);
        const DeviceTensor device_x = DeviceTensor::upload(x, dtype), device_w = DeviceTensor::upload(w, dtype);

        const Tensor expected_y = Tensor::empty(shape, DType::f32);
        const Tensor expected_rstd = Tensor::empty(Shape{rows}, DType::f32);
        ops::rmsnorm_forward(expected_y, expected_rstd, x, w, eps);
        const DeviceTensor y = DeviceTensor::poisoned(shape, dtype);
        const DeviceTensor rstd = DeviceTensor::poisoned(Shape{rows}, DType::f32);
        ops::rmsnorm_forward(y, rstd, device_x, device_w, eps);
        check_output("rmsnorm_forward y " + where, y, expected_y, nmse_threshold(dtype));
        check_output("rmsnorm_forward rstd " + where, rstd, expected_rstd, kNmseF32);

        // Backward from the CPU's rstd, so that both sides differentiate the same forward.
        const Tensor dy = random_representable(shape, dtype, rng);
        const Tensor dw_start = random_representable(Shape{dim}, dtype, rng);
        const Tensor expected_dx = Tensor::empty(shape, DType::f32);
        const Tensor expected_dw = dw_start.clone();
        ops::rmsnorm_backward(expected_dx, expected_dw, dy, x, w, expected_rstd);
        const DeviceTensor device_dy = DeviceTensor::upload(dy, dtype);
        const DeviceTensor device_rstd = DeviceTensor::upload(expected_rstd, DType::f32);
        const DeviceTensor dx = DeviceTensor::poisoned(shape, dtype);
        const DeviceTensor dw = DeviceTensor::upload(dw_start, dtype);
        ops::rmsnorm_backward(dx, dw, device_dy, device_x, device_w, device_rstd);
        check_output("rmsnorm_backward dx " + where, dx, expected_dx, nmse_threshold(dtype));
        check_output("rmsnorm_backward dw " + where, dw, expected_dw, nmse_threshold(dtype));

        // No atomics: a second run from the same start gives the same bits.
        const DeviceTensor dw_again = DeviceTensor::upload(dw_start, dtype);
        ops::rmsnorm_backward(dx, dw_again, device_dy, device_x, device_w, device_rstd);
        check_output("rmsnorm_backward dw rerun " + where, dw_again, dw.download(), 0.0);
      }
    }
  }
}

TEST_CASE("backend norm: rstd must be f32 on CUDA") {
  const DeviceTensor x = DeviceTensor::poisoned(Shape{2, 8}, DType::bf16);
  const DeviceTensor w = DeviceTensor::poisoned(Shape{8}, DType::bf16);
  const DeviceTensor y = DeviceTensor::poisoned(Shape{2, 8}, DType::bf16);
  const DeviceTensor rstd = DeviceTensor::poisoned(Shape{2}, DType::bf16);
  CHECK_THROWS_WITH_AS(ops::rmsnorm_forward(y, rstd, x, w, 1e-6),
                       doctest::Contains("rmsnorm_forward: rstd is bf16[2]@cuda, expected dtype f32"), dsv3::Error);
}
