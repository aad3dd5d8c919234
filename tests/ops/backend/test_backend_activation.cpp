#include "dsv3/ops/activation.hpp"

#include "backend_ops.hpp"

#include <doctest/doctest.h>

#include <cmath>

using namespace dsv3;
using namespace dsv3::testing;
using namespace dsv3::testing::backend;

namespace {

// Odd sizes for the tails after the 16-byte packs; 0 must be a no-op.
const Shape kShapes[] = {Shape{0}, Shape{1}, Shape{7, 13}, Shape{3, 1000, 3}, Shape{4101}};

// A view of `count` elements starting one element into `tensor`: not 16-byte aligned, so the kernels take their
// element-by-element path.
Tensor shifted(const DeviceTensor& tensor, std::int64_t count) {
  return Tensor(tensor.tensor().storage(), dtype_size(tensor.tensor().dtype()), Shape{count}, tensor.tensor().dtype());
}

}  // namespace

TEST_CASE("backend activation: swiglu forward and backward, in place, and on unaligned views") {
  Rng rng(41);
  for (const DType dtype : kDeviceFloatTypes) {
    for (const Shape& shape : kShapes) {
      const std::string where = fmt::format("{} {}", dtype_name(dtype), shape.to_string());
      // Gates over the range where the sigmoid bends and saturates.
      const Tensor gate = random_representable(shape, dtype, rng, -8.0, 8.0);
      const Tensor up = random_representable(shape, dtype, rng);
      const Tensor dh = random_representable(shape, dtype, rng);
      const DeviceTensor device_gate = DeviceTensor::upload(gate, dtype), device_up = DeviceTensor::upload(up, dtype);
      const DeviceTensor device_dh = DeviceTensor::upload(dh, dtype);

      const Tensor expected_h = Tensor::empty(shape, DType::f32);
      ops::swiglu_forward(expected_h, gate, up);
      const DeviceTensor h = DeviceTensor::poisoned(shape, dtype);
      ops::swiglu_forward(h, device_gate, device_up);
      check_output("swiglu_forward " + where, h, expected_h, nmse_threshold(dtype));

      const Tensor expected_dgate = Tensor::empty(shape, DType::f32), expected_dup = Tensor::empty(shape, DType::f32);
      ops::swiglu_backward(expected_dgate, expected_dup, dh, gate, up);
      const DeviceTensor dgate = DeviceTensor::poisoned(shape, dtype), dup = DeviceTensor::poisoned(shape, dtype);
      ops::swiglu_backward(dgate, dup, device_dh, device_gate, device_up);
      check_output("swiglu_backward dgate " + where, dgate, expected_dgate, nmse_threshold(dtype));
      check_output("swiglu_backward dup " + where, dup, expected_dup, nmse_threshold(dtype));

      // The gradients written over the inputs they are computed from.
      const DeviceTensor gate_then_dgate = DeviceTensor::upload(gate, dtype);
      const DeviceTensor up_then_dup = DeviceTensor::upload(up, dtype);
      ops::swiglu_backward(gate_then_dgate, up_then_dup, device_dh, gate_then_dgate, up_then_dup);
      check_output("swiglu_backward in place dgate " + where, gate_then_dgate, expected_dgate, nmse_threshold(dtype));
      check_output("swiglu_backward in place dup " + where, up_then_dup, expected_dup, nmse_threshold(dtype));
    }
    // Unaligned views: the same numbers one element into larger buffers.
    const std::int64_t n = 1001;
    const Tensor gate = random_representable(Shape{n + 1}, dtype, rng, -8.0, 8.0);
    const Tensor up = random_representable(Shape{n + 1}, dtype, rng);
    const DeviceTensor device_gate = DeviceTensor::upload(gate, dtype), device_up = DeviceTensor::upload(up, dtype);
    const DeviceTensor h = DeviceTensor::poisoned(Shape{n + 1}, dtype);
    ops::swiglu_forward(shifted(h, n), shifted(device_gate, n), shifted(device_up, n));
    const Tensor expected_h = Tensor::empty(Shape{n}, DType::f32);
    ops::swiglu_forward(expected_h, gate.rows(1, n + 1), up.rows(1, n + 1));
    const Nmse result = nmse(h.download().rows(1, n + 1), expected_h);
    INFO("swiglu_forward unaligned ", dtype_name(dtype), ": ", result.message);
    CHECK(result.non_finite == 0);
    CHECK(result.value <= nmse_threshold(dtype));
    CHECK(std::isnan(value_at(h.download(), 0)));  // the element before the view is untouched
    h.check_guard("swiglu_forward unaligned");
  }
}
