#include "dsv3/ops/elementwise.hpp"

#include "dsv3/ops/cpu/elementwise.hpp"

namespace dsv3::ops {

namespace {

// `tensor` has the shape, dtype and device of `like` (a tensor already checked).
void expect_like(const char* op, const char* name, const Tensor& tensor, const Tensor& like) {
  expect_shape(op, name, tensor, like.shape());
  expect_same_dtype(op, {&like, &tensor});
  expect_same_device(op, {&like, &tensor});
}

}  // namespace

void convert(const Tensor& dst, const Tensor& src, Stream) {
  const char* op = "convert";
  expect_defined(op, "src", src);
  expect_shape(op, "dst", dst, src.shape());
  DSV3_CHECK(is_floating(dst.dtype()) == is_floating(src.dtype()),
             "{}: cannot convert src {} to dst {}: float and index dtypes do not mix", op, src.describe(),
             dst.describe());
  expect_same_device(op, {&dst, &src});
  if (dst.device() != Device::cpu) unsupported_device(op, dst.device());
  cpu::convert(dst, src);
}

void round_to_bf16(const Tensor& y, const Tensor& x, Stream) {
  const char* op = "round_to_bf16";
  expect_dtype(op, "x", x, DType::f32);
  expect_like(op, "y", y, x);
  if (x.device() != Device::cpu) unsupported_device(op, x.device());
  cpu::round_to_bf16(y, x);
}

void fill(const Tensor& y, double value, Stream) {
  expect_float("fill", "y", y);
  if (y.device() != Device::cpu) unsupported_device("fill", y.device());
  cpu::fill(y, value);
}

void add(const Tensor& y, const Tensor& a, const Tensor& b, Stream) {
  const char* op = "add";
  expect_float(op, "a", a);
  expect_like(op, "b", b, a);
  expect_like(op, "y", y, a);
  if (a.device() != Device::cpu) unsupported_device(op, a.device());
  cpu::add(y, a, b);
}

void axpy(const Tensor& y, double alpha, const Tensor& x, Stream) {
  const char* op = "axpy";
  expect_float(op, "x", x);
  expect_like(op, "y", y, x);
  if (x.device() != Device::cpu) unsupported_device(op, x.device());
  cpu::axpy(y, alpha, x);
}

void scale(const Tensor& y, double alpha, Stream) {
  expect_float("scale", "y", y);
  if (y.device() != Device::cpu) unsupported_device("scale", y.device());
  cpu::scale(y, alpha);
}

}  // namespace dsv3::ops
