#include "dsv3/ops/cpu/norm.hpp"

#include "dsv3/ops/cpu/dispatch.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace dsv3::ops::cpu {

void rmsnorm_forward(const Tensor& y, const Tensor& rstd, const Tensor& x, const Tensor& w, double eps) {
  const std::int64_t dim = x.size(-1);
  const std::int64_t rows = x.numel() / dim;
  with_float_type(x.dtype(), "rmsnorm_forward", [&]<class T>() {
    const T* in = x.data<T>();      // [rows, D]
    const T* weight = w.data<T>();  // [D]
    T* out = y.data<T>();           // [rows, D]
    T* rstd_row = rstd.data<T>();   // [rows]
#pragma omp parallel for
    for (std::int64_t row = 0; row < rows; ++row) {
      const T* x_row = in + row * dim;
      // Squares summed in double: D is up to 7168 and an f32 running sum would lose the small terms.
      double sum_squares = 0.0;
      for (std::int64_t j = 0; j < dim; ++j) sum_squares += static_cast<double>(x_row[j]) * x_row[j];
      // y uses the rstd as stored, so that backward differentiates exactly what forward computed.
      const T r = static_cast<T>(1.0 / std::sqrt(sum_squares / static_cast<double>(dim) + eps));
      rstd_row[row] = r;
      T* y_row = out + row * dim;
      for (std::int64_t j = 0; j < dim; ++j) y_row[j] = x_row[j] * r * weight[j];
    }
  });
}

void rmsnorm_backward(const Tensor& dx, const Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                      const Tensor& rstd) {
  const std::int64_t dim = x.size(-1);
  const std::int64_t rows = x.numel() / dim;
  with_float_type(x.dtype(), "rmsnorm_backward", [&]<class T>() {
    const T* in = x.data<T>();           // [rows, D]
    const T* weight = w.data<T>();       // [D]
    const T* dout = dy.data<T>();        // [rows, D]
    const T* rstd_row = rstd.data<T>();  // [rows]
    T* din = dx.data<T>();               // [rows, D]
    T* dweight = dw.data<T>();           // [D]

    // With r = (mean(x²) + eps)^-½ and dr/dx_k = −r³·x_k/D:
    //   dx_k = r·w_k·dy_k − (r³/D)·x_k·Σ_j dy_j·w_j·x_j
#pragma omp parallel for
    for (std::int64_t row = 0; row < rows; ++row) {
      const T* x_row = in + row * dim;
      const T* dy_row = dout + row * dim;
      double sum_dy_w_x = 0.0;
      for (std::int64_t j = 0; j < dim; ++j) sum_dy_w_x += static_cast<double>(dy_row[j]) * weight[j] * x_row[j];
      const T r = rstd_row[row];
      const T correction = static_cast<T>(sum_dy_w_x * r * r * r / static_cast<double>(dim));
      T* dx_row = din + row * dim;
      for (std::int64_t j = 0; j < dim; ++j) dx_row[j] = r * weight[j] * dy_row[j] - correction * x_row[j];
    }

    // dw_j += Σ_rows dy_j·x_j·r. Every row adds to all of dw, so the threads split the columns instead (one
    // writer per dw element) and walk the rows in order over a block of columns, in double, which keeps the
    // reads contiguous and the result independent of the thread count.
    constexpr std::int64_t kColumnBlock = 64;
    const std::int64_t blocks = (dim + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for
    for (std::int64_t block = 0; block < blocks; ++block) {
      const std::int64_t first = block * kColumnBlock;
      const std::int64_t width = std::min(kColumnBlock, dim - first);
      double sum[kColumnBlock] = {};
      for (std::int64_t row = 0; row < rows; ++row) {
        const T* x_row = in + row * dim + first;
        const T* dy_row = dout + row * dim + first;
        const double r = rstd_row[row];
        for (std::int64_t c = 0; c < width; ++c) sum[c] += static_cast<double>(dy_row[c]) * x_row[c] * r;
      }
      for (std::int64_t c = 0; c < width; ++c) dweight[first + c] += static_cast<T>(sum[c]);
    }
  });
}

}  // namespace dsv3::ops::cpu
