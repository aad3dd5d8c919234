#include "dsv3/ops/activation.hpp"

#include "dsv3/ops/cpu/activation.hpp"

namespace dsv3::ops {

void swiglu_forward(const Tensor& h, const Tensor& gate, const Tensor& up, Stream) {
  const char* op = "swiglu_forward";
  expect_float(op, "gate", gate);
  expect_shape(op, "up", up, gate.shape());
  expect_shape(op, "h", h, gate.shape());
  expect_same_dtype(op, {&gate, &up, &h});
  expect_same_device(op, {&gate, &up, &h});
  if (gate.device() != Device::cpu) unsupported_device(op, gate.device());
  cpu::swiglu_forward(h, gate, up);
}

void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dh, const Tensor& gate, const Tensor& up,
                     Stream) {
  const char* op = "swiglu_backward";
  expect_float(op, "gate", gate);
  expect_shape(op, "up", up, gate.shape());
  expect_shape(op, "dh", dh, gate.shape());
  expect_shape(op, "dgate", dgate, gate.shape());
  expect_shape(op, "dup", dup, gate.shape());
  expect_same_dtype(op, {&gate, &up, &dh, &dgate, &dup});
  expect_same_device(op, {&gate, &up, &dh, &dgate, &dup});
  if (gate.device() != Device::cpu) unsupported_device(op, gate.device());
  cpu::swiglu_backward(dgate, dup, dh, gate, up);
}

}  // namespace dsv3::ops
