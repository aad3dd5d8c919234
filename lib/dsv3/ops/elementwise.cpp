#include "dsv3/ops/elementwise.hpp"

#include "dsv3/ops/cpu/elementwise.hpp"
#include "dsv3/ops/cuda/elementwise.hpp"
#include "dsv3/ops/cuda_dispatch.hpp"

namespace dsv3::ops {

namespace {

// `tensor` has the shape, dtype and device of `like` (a tensor already checked).
void expect_like(const char* op, const char* name, const Tensor& tensor, const Tensor& like) {
  expect_shape(op, name, tensor, like.shape());
  expect_same_dtype(op, {&like, &tensor});
  expect_same_device(op, {&like, &tensor});
}

[[maybe_unused]] cuda::Storage cuda_storage(const char* op, const Tensor& tensor) {
  switch (tensor.dtype()) {
    case DType::f32: return cuda::Storage::f32;
    case DType::bf16: return cuda::Storage::bf16;
    case DType::fp8_e4m3: return cuda::Storage::fp8_e4m3;
    default: fail("{}: {} has no CUDA float storage (f32, bf16 or fp8 e4m3)", op, tensor.describe());
  }
}

[[maybe_unused]] void convert_on_cuda(const Tensor& dst, const Tensor& src, Stream stream) {
  const char* op = "convert";
  if (is_floating(src.dtype())) {
    cuda::convert_float(dst.raw(), cuda_storage(op, dst), src.raw(), cuda_storage(op, src), src.numel(),
                        stream.handle);
  } else {
    cuda::convert_index(dst.raw(), cuda_index(op, "dst", dst), src.raw(), cuda_index(op, "src", src), src.numel(),
                        stream.handle);
  }
}

}  // namespace

void convert(const Tensor& dst, const Tensor& src, Stream stream) {
  const char* op = "convert";
  expect_defined(op, "src", src);
  expect_shape(op, "dst", dst, src.shape());
  DSV3_CHECK(is_floating(dst.dtype()) == is_floating(src.dtype()),
             "{}: cannot convert src {} to dst {}: float and index dtypes do not mix", op, src.describe(),
             dst.describe());
  expect_same_device(op, {&dst, &src});
  if (dst.device() == Device::cuda) return DSV3_ON_CUDA(op, convert_on_cuda(dst, src, stream));
  cpu::convert(dst, src);
}

void round_to_bf16(const Tensor& y, const Tensor& x, Stream stream) {
  const char* op = "round_to_bf16";
  expect_dtype(op, "x", x, DType::f32);
  expect_like(op, "y", y, x);
  if (x.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::round_to_bf16(y.data<float>(), x.data<float>(), x.numel(), stream.handle));
  }
  cpu::round_to_bf16(y, x);
}

void fill(const Tensor& y, double value, Stream stream) {
  const char* op = "fill";
  expect_float(op, "y", y);
  if (y.device() == Device::cuda) {
    // Rounded once from double to y's dtype here (the reference's rounding), so that the kernel's float → storage
    // conversion is exact rather than a second rounding.
    const Tensor exact = Tensor::empty(Shape{1}, DType::f64), stored = Tensor::empty(Shape{1}, y.dtype());
    const Tensor widened = Tensor::empty(Shape{1}, DType::f64);
    *exact.data<double>() = value;
    cpu::convert(stored, exact);
    cpu::convert(widened, stored);
    return DSV3_ON_CUDA(op, cuda::fill(y.raw(), cuda_float(op, "y", y), *widened.data<double>(), y.numel(),
                                       stream.handle));
  }
  cpu::fill(y, value);
}

void add(const Tensor& y, const Tensor& a, const Tensor& b, Stream stream) {
  const char* op = "add";
  expect_float(op, "a", a);
  expect_like(op, "b", b, a);
  expect_like(op, "y", y, a);
  if (a.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::add(y.raw(), a.raw(), b.raw(), cuda_float(op, "a", a), a.numel(), stream.handle));
  }
  cpu::add(y, a, b);
}

void axpy(const Tensor& y, double alpha, const Tensor& x, Stream stream) {
  const char* op = "axpy";
  expect_float(op, "x", x);
  expect_like(op, "y", y, x);
  if (x.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::axpy(y.raw(), alpha, x.raw(), cuda_float(op, "x", x), x.numel(), stream.handle));
  }
  cpu::axpy(y, alpha, x);
}

void scale(const Tensor& y, double alpha, Stream stream) {
  const char* op = "scale";
  expect_float(op, "y", y);
  if (y.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::scale(y.raw(), alpha, cuda_float(op, "y", y), y.numel(), stream.handle));
  }
  cpu::scale(y, alpha);
}

void copy_head_columns(const Tensor& dst, std::int64_t dst_column, const Tensor& src, std::int64_t src_column,
                       std::int64_t width, Stream stream) {
  const char* op = "copy_head_columns";
  expect_float(op, "dst", dst);
  expect_float(op, "src", src);
  DSV3_CHECK(dst.rank() == 3 && src.rank() == 3 && dst.size(0) == src.size(0) &&
                 (dst.size(1) == src.size(1) || dst.size(1) == 1 || src.size(1) == 1) && width >= 0 &&
                 dst_column >= 0 && src_column >= 0 && dst_column + width <= dst.size(2) &&
                 src_column + width <= src.size(2),
             "{}: cannot copy {} columns from {} at {} to {} at {}", op, width, src.describe(), src_column,
             dst.describe(), dst_column);
  expect_same_dtype(op, {&dst, &src});
  expect_same_device(op, {&dst, &src});
  if (dst.device() == Device::cuda) {
    cuda::HeadColumns columns;
    columns.tokens = dst.size(0);
    columns.dst_heads = dst.size(1);
    columns.src_heads = src.size(1);
    columns.dst_row = dst.size(2);
    columns.src_row = src.size(2);
    columns.dst_column = dst_column;
    columns.src_column = src_column;
    columns.width = width;
    return DSV3_ON_CUDA(op, cuda::copy_head_columns(dst.raw(), src.raw(), cuda_float(op, "dst", dst), columns,
                                                    stream.handle));
  }
  cpu::copy_head_columns(dst, dst_column, src, src_column, width);
}

}  // namespace dsv3::ops
