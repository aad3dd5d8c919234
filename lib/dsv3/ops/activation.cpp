#include "dsv3/ops/activation.hpp"

#include "dsv3/ops/cpu/activation.hpp"
#include "dsv3/ops/cuda/activation.hpp"
#include "dsv3/ops/cuda_dispatch.hpp"

namespace dsv3::ops {

void swiglu_forward(const Tensor& h, const Tensor& gate, const Tensor& up, Stream stream) {
  const char* op = "swiglu_forward";
  expect_float(op, "gate", gate);
  expect_shape(op, "up", up, gate.shape());
  expect_shape(op, "h", h, gate.shape());
  expect_same_dtype(op, {&gate, &up, &h});
  expect_same_device(op, {&gate, &up, &h});
  if (gate.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::swiglu_forward(h.raw(), gate.raw(), up.raw(), cuda_float(op, "gate", gate),
                                                 gate.numel(), stream.handle));
  }
  cpu::swiglu_forward(h, gate, up);
}

void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dh, const Tensor& gate, const Tensor& up,
                     Stream stream) {
  const char* op = "swiglu_backward";
  expect_float(op, "gate", gate);
  expect_shape(op, "up", up, gate.shape());
  expect_shape(op, "dh", dh, gate.shape());
  expect_shape(op, "dgate", dgate, gate.shape());
  expect_shape(op, "dup", dup, gate.shape());
  expect_same_dtype(op, {&gate, &up, &dh, &dgate, &dup});
  expect_same_device(op, {&gate, &up, &dh, &dgate, &dup});
  if (gate.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::swiglu_backward(dgate.raw(), dup.raw(), dh.raw(), gate.raw(), up.raw(),
                                                  cuda_float(op, "gate", gate), gate.numel(), stream.handle));
  }
  cpu::swiglu_backward(dgate, dup, dh, gate, up);
}

}  // namespace dsv3::ops
