#include "dsv3/ops/norm.hpp"

#include "dsv3/ops/cpu/norm.hpp"
#include "dsv3/ops/cuda/norm.hpp"
#include "dsv3/ops/cuda_dispatch.hpp"

namespace dsv3::ops {

namespace {

// What forward and backward share: x [..., D] in a compute dtype, w [D], rstd [rows = numel(x)/D].
void check_rmsnorm(const char* op, const Tensor& x, const Tensor& w, const Tensor& rstd) {
  expect_float(op, "x", x);
  DSV3_CHECK(x.rank() >= 1 && x.size(-1) >= 1, "{}: x is {}, expected [..., D] with D >= 1", op, x.describe());
  const std::int64_t dim = x.size(-1);
  expect_shape(op, "w", w, Shape{dim});
  expect_shape(op, "rstd", rstd, Shape{x.numel() / dim});
}

// rstd: f32 on CUDA whatever x's dtype (a bf16 statistic would lose the precision it is kept for), x's dtype on
// the CPU. `tensors`: the others, which have x's dtype.
void expect_dtypes(const char* op, const Tensor& x, const Tensor& rstd, std::initializer_list<const Tensor*> tensors) {
  if (x.device() == Device::cuda) {
    expect_dtype(op, "rstd", rstd, DType::f32);
  } else {
    expect_same_dtype(op, {&x, &rstd});
  }
  for (const Tensor* tensor : tensors) expect_same_dtype(op, {&x, tensor});
}

}  // namespace

void rmsnorm_forward(const Tensor& y, const Tensor& rstd, const Tensor& x, const Tensor& w, double eps, Stream stream) {
  const char* op = "rmsnorm_forward";
  check_rmsnorm(op, x, w, rstd);
  expect_shape(op, "y", y, x.shape());
  expect_dtypes(op, x, rstd, {&w, &y});
  expect_same_device(op, {&x, &w, &y, &rstd});
  DSV3_CHECK(eps >= 0.0, "{}: eps is {}, expected a non-negative number", op, eps);
  if (x.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::rmsnorm_forward(y.raw(), rstd.data<float>(), x.raw(), w.raw(), cuda_float(op, "x", x),
                                                  rstd.numel(), x.size(-1), eps, stream.handle));
  }
  cpu::rmsnorm_forward(y, rstd, x, w, eps);
}

void rmsnorm_backward(const Tensor& dx, const Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                      const Tensor& rstd, Stream stream) {
  const char* op = "rmsnorm_backward";
  check_rmsnorm(op, x, w, rstd);
  expect_shape(op, "dy", dy, x.shape());
  expect_shape(op, "dx", dx, x.shape());
  expect_shape(op, "dw", dw, w.shape());
  expect_dtypes(op, x, rstd, {&w, &dy, &dx, &dw});
  expect_same_device(op, {&x, &w, &rstd, &dy, &dx, &dw});
  if (x.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::rmsnorm_backward(dx.raw(), dw.raw(), dy.raw(), x.raw(), w.raw(), rstd.data<float>(),
                                                   cuda_float(op, "x", x), rstd.numel(), x.size(-1), stream.handle));
  }
  cpu::rmsnorm_backward(dx, dw, dy, x, w, rstd);
}

}  // namespace dsv3::ops
