#include "dsv3/ops/matmul.hpp"

#include "dsv3/ops/cpu/matmul.hpp"
#include "dsv3/ops/cuda/matmul.hpp"
#include "dsv3/ops/cuda_dispatch.hpp"

namespace dsv3::ops {

namespace {

// [..., features] as [rows, features].
Tensor as_matrix(const Tensor& tensor) {
  const std::int64_t features = tensor.size(-1);
  return tensor.view(Shape{features == 0 ? 0 : tensor.numel() / features, features});
}

void check_matmul(const char* op, const Tensor& c, const Tensor& a, const Tensor& b, const GemmOptions& options) {
  expect_float(op, "c", c);
  expect_float(op, "a", a);
  expect_float(op, "b", b);
  expect_same_dtype(op, {&c, &a, &b});
  expect_same_device(op, {&c, &a, &b});
  DSV3_CHECK(c.rank() == 2 || c.rank() == 3, "{}: c is {}, expected rank 2 or 3", op, c.describe());
  DSV3_CHECK(a.rank() == c.rank() && (b.rank() == 2 || b.rank() == c.rank()),
             "{}: ranks of a {}, b {}, c {} do not match", op, a.describe(), b.describe(), c.describe());
  const std::int64_t m = options.transpose_a ? a.size(-1) : a.size(-2);
  const std::int64_t k = options.transpose_a ? a.size(-2) : a.size(-1);
  const std::int64_t kb = options.transpose_b ? b.size(-1) : b.size(-2);
  const std::int64_t n = options.transpose_b ? b.size(-2) : b.size(-1);
  DSV3_CHECK(k == kb, "{}: inner extents differ: a {} (transposed: {}) has {}, b {} (transposed: {}) has {}", op,
             a.describe(), options.transpose_a, k, b.describe(), options.transpose_b, kb);
  DSV3_CHECK(c.size(-2) == m && c.size(-1) == n, "{}: c is {}, expected [{}, {}] from a {} and b {}", op,
             c.describe(), m, n, a.describe(), b.describe());
  if (c.rank() == 3) {
    DSV3_CHECK(a.size(0) == c.size(0) && (b.rank() == 2 || b.size(0) == c.size(0)),
               "{}: batch extents differ: a {}, b {}, c {}", op, a.describe(), b.describe(), c.describe());
  }
}

void check_grouped(const char* op, const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& offsets) {
  expect_float(op, "x", x);
  expect_rank(op, "x", x, 2);
  expect_rank(op, "w", w, 3);
  expect_same_dtype(op, {&x, &w, &y});
  expect_same_device(op, {&x, &w, &y});
  const std::int64_t experts = w.size(0);
  DSV3_CHECK(x.size(1) == w.size(2), "{}: x {} and w {} disagree on the input features", op, x.describe(),
             w.describe());
  expect_shape(op, "y", y, Shape{x.size(0), w.size(1)});
  expect_dtype(op, "offsets", offsets, DType::i64);
  expect_on_host(op, "offsets", offsets);
  expect_shape(op, "offsets", offsets, Shape{experts + 1});
  const std::int64_t* offset = offsets.data<std::int64_t>();
  DSV3_CHECK(offset[0] == 0 && offset[experts] == x.size(0), "{}: offsets run from {} to {}, expected 0 to {}", op,
             offset[0], offset[experts], x.size(0));
  for (std::int64_t e = 0; e < experts; ++e) {
    DSV3_CHECK(offset[e] <= offset[e + 1], "{}: offsets decrease at expert {} ({} > {})", op, e, offset[e],
               offset[e + 1]);
  }
}

// The checked product on CUDA. A rank-2 b shared by a batch is folded into one product when a is not transposed
// (a [B, m, k] is [B·m, k] and c [B·m, n]), and run entry by entry otherwise.
[[maybe_unused]] void matmul_on_cuda(const Tensor& c, const Tensor& a, const Tensor& b, const GemmOptions& options,
                                     Stream stream) {
  const char* op = "matmul";
  const cuda::Float type = cuda_float(op, "c", c);
  cuda::GemmShape shape;
  shape.m = c.size(-2);
  shape.n = c.size(-1);
  shape.k = options.transpose_a ? a.size(-2) : a.size(-1);
  shape.transpose_a = options.transpose_a;
  shape.transpose_b = options.transpose_b;
  if (c.rank() == 3 && b.rank() == 2) {
    if (!options.transpose_a) {
      shape.m *= c.size(0);
    } else {
      for (std::int64_t entry = 0; entry < c.size(0); ++entry) {
        cuda::gemm(c[entry].raw(), a[entry].raw(), b.raw(), type, shape, options.alpha, options.beta, stream.handle);
      }
      return;
    }
  } else if (c.rank() == 3) {
    shape.batch = c.size(0);
    shape.a_stride = a.size(1) * a.size(2);
    shape.b_stride = b.size(1) * b.size(2);
    shape.c_stride = c.size(1) * c.size(2);
  }
  cuda::gemm(c.raw(), a.raw(), b.raw(), type, shape, options.alpha, options.beta, stream.handle);
}

// dx = dy · w (when dx is defined), dw += dyᵀ · x.
[[maybe_unused]] void linear_backward_on_cuda(const Tensor& dx, const Tensor& dw, const Tensor& dy, const Tensor& x,
                                              const Tensor& w, Stream stream) {
  if (dx.defined()) matmul_on_cuda(as_matrix(dx), as_matrix(dy), w, GemmOptions{}, stream);
  matmul_on_cuda(dw, as_matrix(dy), as_matrix(x), GemmOptions{.transpose_a = true, .beta = 1.0}, stream);
}

}  // namespace

void matmul(const Tensor& c, const Tensor& a, const Tensor& b, const GemmOptions& options, Stream stream) {
  check_matmul("matmul", c, a, b, options);
  if (c.device() == Device::cuda) return DSV3_ON_CUDA("matmul", matmul_on_cuda(c, a, b, options, stream));
  cpu::matmul(c, a, b, options);
}

void cublas_reference_matmul(const Tensor& c, const Tensor& a, const Tensor& b, Stream stream) {
  const char* op = "cublas_reference_matmul";
  check_matmul(op, c, a, b, GemmOptions{});
  expect_rank(op, "c", c, 2);
  DSV3_CHECK(c.device() == Device::cuda, "{}: c is {}: cuBLAS's reference needs CUDA tensors", op, c.describe());
  DSV3_ON_CUDA(op, cuda::gemm_cublas_reference(c.raw(), a.raw(), b.raw(), cuda_float(op, "c", c), c.size(0),
                                               c.size(1), a.size(1), stream.handle));
}

void linear_forward(const Tensor& y, const Tensor& x, const Tensor& w, Stream stream) {
  const char* op = "linear_forward";
  expect_float(op, "x", x);
  expect_rank(op, "w", w, 2);
  expect_defined(op, "y", y);
  DSV3_CHECK(x.rank() >= 1 && x.size(-1) == w.size(1), "{}: x {} does not end in w's input extent {} (w {})", op,
             x.describe(), w.size(1), w.describe());
  Shape expected = x.shape();
  expected[-1] = w.size(0);
  expect_shape(op, "y", y, expected);
  const GemmOptions options{.transpose_b = true};
  check_matmul(op, as_matrix(y), as_matrix(x), w, options);
  if (x.device() == Device::cuda) return DSV3_ON_CUDA(op, matmul_on_cuda(as_matrix(y), as_matrix(x), w, options, stream));
  cpu::matmul(as_matrix(y), as_matrix(x), w, options);
}

void linear_backward(const Tensor& dx, const Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                     Stream stream) {
  const char* op = "linear_backward";
  expect_float(op, "x", x);
  expect_rank(op, "w", w, 2);
  expect_shape(op, "dw", dw, w.shape());
  Shape dy_shape = x.shape();
  dy_shape[-1] = w.size(0);
  expect_shape(op, "dy", dy, dy_shape);
  if (dx.defined()) expect_shape(op, "dx", dx, x.shape());
  expect_same_dtype(op, {&x, &w, &dw, &dy, &dx});
  expect_same_device(op, {&x, &w, &dw, &dy, &dx});
  if (x.device() == Device::cuda) return DSV3_ON_CUDA(op, linear_backward_on_cuda(dx, dw, dy, x, w, stream));
  cpu::linear_backward(dx, dw, dy, x, w);
}

void grouped_linear_forward(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& offsets, Stream stream) {
  const char* op = "grouped_linear_forward";
  check_grouped(op, y, x, w, offsets);
  if (x.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::grouped_linear_forward(y.raw(), x.raw(), w.raw(), cuda_float(op, "x", x),
                                                         offsets.data<std::int64_t>(), w.size(0), w.size(2),
                                                         w.size(1), stream.handle));
  }
  cpu::grouped_linear_forward(y, x, w, offsets);
}

void grouped_linear_backward(const Tensor& dx, const Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                             const Tensor& offsets, Stream stream) {
  const char* op = "grouped_linear_backward";
  check_grouped(op, dy, x, w, offsets);
  expect_shape(op, "dw", dw, w.shape());
  if (dx.defined()) expect_shape(op, "dx", dx, x.shape());
  expect_same_dtype(op, {&x, &dw, &dx});
  expect_same_device(op, {&x, &dw, &dx});
  if (x.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::grouped_linear_backward(device_pointer(dx), dw.raw(), dy.raw(), x.raw(), w.raw(),
                                                          cuda_float(op, "x", x), offsets.data<std::int64_t>(),
                                                          w.size(0), w.size(2), w.size(1), stream.handle));
  }
  cpu::grouped_linear_backward(dx, dw, dy, x, w, offsets);
}

}  // namespace dsv3::ops
