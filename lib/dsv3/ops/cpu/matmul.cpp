#include "dsv3/ops/cpu/matmul.hpp"

#include "dsv3/ops/cpu/blas.hpp"
#include "dsv3/ops/cpu/dispatch.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace dsv3::ops::cpu {

namespace {

// Rows [first, last) of one expert's block (of its tokens, or of its weight): a unit of work of the grouped
// products.
struct ExpertPanel {
  std::int64_t expert;
  int first, last;
};

// Each expert's `extent(e)` rows cut into panels of about the same height, in expert order, as work for the
// OpenMP threads (dynamically scheduled, as experts get different numbers of tokens). Roughly four panels per
// thread over all experts balance the load; on one thread every expert is one panel. The cut depends only on
// the extents and the thread count.
template <class Extent>
std::vector<ExpertPanel> expert_panels(std::int64_t experts, Extent&& extent) {
  constexpr std::int64_t kAlign = 16, kMinRows = 64;
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  std::int64_t total = 0;
  for (std::int64_t e = 0; e < experts; ++e) total += extent(e);
  const std::int64_t quarter_share = (total / (4 * threads) + kAlign - 1) / kAlign * kAlign;
  const std::int64_t target = threads == 1 ? std::max<std::int64_t>(total, 1) : std::max(kMinRows, quarter_share);
  std::vector<ExpertPanel> panels;
  for (std::int64_t e = 0; e < experts; ++e) {
    const std::int64_t rows = extent(e);
    const std::int64_t count = std::max<std::int64_t>(1, (rows + target / 2) / target);
    for (std::int64_t part = 0; part < count && rows > 0; ++part) {
      panels.push_back({e, static_cast<int>(rows * part / count), static_cast<int>(rows * (part + 1) / count)});
    }
  }
  return panels;
}

}  // namespace

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
      parallel_gemm(GemmArgs<T>{options.transpose_a, options.transpose_b, m, n, k, static_cast<T>(options.alpha),
                                a.data<T>() + i * a_stride, lda, b.data<T>() + i * b_stride, ldb,
                                static_cast<T>(options.beta), c.data<T>() + i * c_stride, n});
    }
  });
}

void linear_backward(const Tensor& dx, const Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w) {
  const int rows = static_cast<int>(x.numel() / x.size(-1));
  const int out = static_cast<int>(w.size(0));
  const int in = static_cast<int>(w.size(1));
  with_float_type(x.dtype(), "linear_backward", [&]<class T>() {
    // dw += dyᵀ · x: [out, rows] · [rows, in]
    const GemmArgs<T> weight{true, false, out, in, rows, T{1}, dy.data<T>(), out, x.data<T>(), in, T{1},
                             dw.data<T>(), in};
    if (!dx.defined()) {
      parallel_gemm(weight);
      return;
    }
    // dx = dy · w: [rows, out] · [out, in]
    const GemmArgs<T> input{false, false, rows, in, out, T{1}, dy.data<T>(), out, w.data<T>(), in, T{0},
                            dx.data<T>(), in};
    parallel_gemm_pair(input, weight);
  });
}

void grouped_linear_forward(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& offsets) {
  const std::int64_t experts = w.size(0);
  const int out = static_cast<int>(w.size(1));
  const int in = static_cast<int>(w.size(2));
  const std::int64_t* offset = offsets.data<std::int64_t>();
  const std::vector<ExpertPanel> panels =
      expert_panels(experts, [&](std::int64_t e) { return offset[e + 1] - offset[e]; });
  use_serial_blas();
  with_float_type(y.dtype(), "grouped_linear_forward", [&]<class T>() {
#pragma omp parallel for schedule(dynamic, 1)
    for (std::size_t p = 0; p < panels.size(); ++p) {
      const auto [e, first, last] = panels[p];
      const std::int64_t row = offset[e] + first;
      // y[rows of the panel] = x[rows of the panel] · w[e]ᵀ
      gemm(false, true, last - first, out, in, T{1}, x.data<T>() + row * in, in, w.data<T>() + e * out * in, in,
           T{0}, y.data<T>() + row * out, out);
    }
  });
}

void grouped_linear_backward(const Tensor& dx, const Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                             const Tensor& offsets) {
  const std::int64_t experts = w.size(0);
  const int out = static_cast<int>(w.size(1));
  const int in = static_cast<int>(w.size(2));
  const std::int64_t* offset = offsets.data<std::int64_t>();
  // dx: panels of each expert's token rows. dw: panels of each expert's weight rows (out); an expert without
  // tokens gets no gradient contribution and no panel.
  const std::vector<ExpertPanel> token_panels =
      dx.defined() ? expert_panels(experts, [&](std::int64_t e) { return offset[e + 1] - offset[e]; })
                   : std::vector<ExpertPanel>{};
  const std::vector<ExpertPanel> weight_panels =
      expert_panels(experts, [&](std::int64_t e) { return offset[e + 1] > offset[e] ? std::int64_t{out} : 0; });
  use_serial_blas();
  with_float_type(dy.dtype(), "grouped_linear_backward", [&]<class T>() {
#pragma omp parallel
    {
#pragma omp for schedule(dynamic, 1) nowait
      for (std::size_t p = 0; p < token_panels.size(); ++p) {
        const auto [e, first, last] = token_panels[p];
        const std::int64_t row = offset[e] + first;
        // dx[rows of the panel] = dy[rows of the panel] · w[e]
        gemm(false, false, last - first, in, out, T{1}, dy.data<T>() + row * out, out, w.data<T>() + e * out * in,
             in, T{0}, dx.data<T>() + row * in, in);
      }
#pragma omp for schedule(dynamic, 1)
      for (std::size_t p = 0; p < weight_panels.size(); ++p) {
        const auto [e, first, last] = weight_panels[p];
        const int rows = static_cast<int>(offset[e + 1] - offset[e]);
        // dw[e][first:last] += dy[rows of e][:, first:last]ᵀ · x[rows of e]
        gemm(true, false, last - first, in, rows, T{1}, dy.data<T>() + offset[e] * out + first, out,
             x.data<T>() + offset[e] * in, in, T{1}, dw.data<T>() + (e * out + first) * in, in);
      }
    }
  });
}

}  // namespace dsv3::ops::cpu
