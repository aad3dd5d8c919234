#include "dsv3/ops/cpu/matmul.hpp"

#include "dsv3/ops/cpu/blas.hpp"
#include "dsv3/ops/cpu/dispatch.hpp"

namespace dsv3::ops::cpu {

void matmul(const Tensor& c, const Tensor& a, const Tensor& b, const GemmOptions& options) {
  const bool batched = c.rank() == 3;
  const std::int64_t batch = batched ? c.size(0) : 1;
  const int m = static_cast<int>(c.size(-2));
  const int n = static_cast<int>(c.size(-1));
  const int k = static_cast<int>(options.transpose_a ? a.size(-2) : a.size(-1));
  const int lda = static_cast<int>(a.size(-1));
  const int ldb = static_cast<int>(b.size(-1));
  const std::int64_t a_stride = static_cast<std::int64_t>(a.size(-2)) * lda;
  const std::int64_t b_stride = b.rank() == 3 ? static_cast<std::int64_t>(b.size(-2)) * ldb : 0;
  const std::int64_t c_stride = static_cast<std::int64_t>(m) * n;
  with_float_type(c.dtype(), "matmul", [&]<class T>() {
    for (std::int64_t i = 0; i < batch; ++i) {
      gemm(options.transpose_a, options.transpose_b, m, n, k, static_cast<T>(options.alpha),
           a.data<T>() + i * a_stride, lda, b.data<T>() + i * b_stride, ldb, static_cast<T>(options.beta),
           c.data<T>() + i * c_stride, n);
    }
  });
}

void grouped_linear_forward(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& offsets) {
  const std::int64_t experts = w.size(0);
  const int out = static_cast<int>(w.size(1));
  const int in = static_cast<int>(w.size(2));
  const std::int64_t* offset = offsets.data<std::int64_t>();
  with_float_type(y.dtype(), "grouped_linear_forward", [&]<class T>() {
    for (std::int64_t e = 0; e < experts; ++e) {
      const int rows = static_cast<int>(offset[e + 1] - offset[e]);
      // y[rows of e] = x[rows of e] · w[e]ᵀ
      gemm(false, true, rows, out, in, T{1}, x.data<T>() + offset[e] * in, in, w.data<T>() + e * out * in, in, T{0},
           y.data<T>() + offset[e] * out, out);
    }
  });
}

void grouped_linear_backward(const Tensor& dx, const Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                             const Tensor& offsets) {
  const std::int64_t experts = w.size(0);
  const int out = static_cast<int>(w.size(1));
  const int in = static_cast<int>(w.size(2));
  const std::int64_t* offset = offsets.data<std::int64_t>();
  with_float_type(dy.dtype(), "grouped_linear_backward", [&]<class T>() {
    for (std::int64_t e = 0; e < experts; ++e) {
      const int rows = static_cast<int>(offset[e + 1] - offset[e]);
      if (dx.defined()) {
        // dx[rows of e] = dy[rows of e] · w[e]
        gemm(false, false, rows, in, out, T{1}, dy.data<T>() + offset[e] * out, out, w.data<T>() + e * out * in, in,
             T{0}, dx.data<T>() + offset[e] * in, in);
      }
      if (rows == 0) continue;  // an expert without tokens gets no gradient contribution
      // dw[e] += dy[rows of e]ᵀ · x[rows of e]
      gemm(true, false, out, in, rows, T{1}, dy.data<T>() + offset[e] * out, out, x.data<T>() + offset[e] * in, in,
           T{1}, dw.data<T>() + e * out * in, in);
    }
  });
}

}  // namespace dsv3::ops::cpu
