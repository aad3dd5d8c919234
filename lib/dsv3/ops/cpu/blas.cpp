#include "dsv3/ops/cpu/blas.hpp"

#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace dsv3::ops::cpu {

namespace {

// Below this many flops a product runs on one thread: starting the team costs more than the work it shares.
constexpr double kMinParallelFlops = 1 << 22;
// Panels are cut at multiples of this many rows or columns (a multiple of OpenBLAS's register tiles), and a
// thread gets no panel narrower than kMinPanel.
constexpr int kPanelAlign = 16;
constexpr int kMinPanel = 32;

int team_size() {
#ifdef _OPENMP
  return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
  return 1;
#endif
}

// First row (or column) of panel `part` of `parts` over `extent`, aligned to kPanelAlign; panel `parts` ends at
// extent.
int panel_start(int part, int parts, int extent) {
  if (part == parts) return extent;
  const std::int64_t start = static_cast<std::int64_t>(extent) * part / parts;
  return static_cast<int>(start / kPanelAlign * kPanelAlign);
}

// Panels of a product cut `parts` ways (fewer when it is too narrow for that many).
struct Cut {
  bool rows;  // c's rows, else its columns
  int extent, parts;
};

template <class T>
Cut cut_of(const GemmArgs<T>& p, int parts) {
  // Cutting c's rows makes every panel pack all of op(b), cutting its columns all of op(a): cut the side whose
  // full operand is the smaller copy.
  const bool rows = p.n <= p.m;
  const int extent = rows ? p.m : p.n;
  const bool worth_sharing = 2.0 * p.m * p.n * p.k >= kMinParallelFlops;
  return {rows, extent, worth_sharing ? std::max(1, std::min(parts, extent / kMinPanel)) : 1};
}

// Panel `part` of the product cut as `cut` says, on the calling thread; nothing for parts beyond the cut.
template <class T>
void gemm_panel(const GemmArgs<T>& p, const Cut& cut, int part) {
  if (part >= cut.parts) return;
  const int first = panel_start(part, cut.parts, cut.extent);
  const int width = panel_start(part + 1, cut.parts, cut.extent) - first;
  if (cut.rows) {  // rows [first, first + width) of op(a) and c
    const T* a_panel = p.a + (p.transpose_a ? first : static_cast<std::int64_t>(first) * p.lda);
    gemm(p.transpose_a, p.transpose_b, width, p.n, p.k, p.alpha, a_panel, p.lda, p.b, p.ldb, p.beta,
         p.c + static_cast<std::int64_t>(first) * p.ldc, p.ldc);
  } else {  // columns [first, first + width) of op(b) and c
    const T* b_panel = p.b + (p.transpose_b ? static_cast<std::int64_t>(first) * p.ldb : first);
    gemm(p.transpose_a, p.transpose_b, p.m, width, p.k, p.alpha, p.a, p.lda, b_panel, p.ldb, p.beta, p.c + first,
         p.ldc);
  }
}

template <class T>
void split_gemm(const GemmArgs<T>& product) {
  use_serial_blas();
  const Cut cut = cut_of(product, team_size());
  if (cut.parts == 1) {
    gemm_panel(product, cut, 0);
    return;
  }
#pragma omp parallel for schedule(static, 1) num_threads(cut.parts)
  for (int part = 0; part < cut.parts; ++part) gemm_panel(product, cut, part);
}

template <class T>
void split_gemm_pair(const GemmArgs<T>& first, const GemmArgs<T>& second) {
  const int threads = team_size();
  if (threads == 1) {
    split_gemm(first);
    split_gemm(second);
    return;
  }
  use_serial_blas();
  const int first_threads = threads / 2;
  const Cut first_cut = cut_of(first, first_threads);
  const Cut second_cut = cut_of(second, threads - first_threads);
#pragma omp parallel num_threads(threads)
  {
#ifdef _OPENMP
    const int thread = omp_get_thread_num();
#else
    const int thread = 0;
#endif
    if (thread < first_threads) {
      gemm_panel(first, first_cut, thread);
    } else {
      gemm_panel(second, second_cut, thread - first_threads);
    }
  }
}

}  // namespace

void use_serial_blas() {
  if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

void parallel_gemm(const GemmArgs<float>& product) { split_gemm(product); }
void parallel_gemm(const GemmArgs<double>& product) { split_gemm(product); }

void parallel_gemm_pair(const GemmArgs<float>& first, const GemmArgs<float>& second) {
  split_gemm_pair(first, second);
}
void parallel_gemm_pair(const GemmArgs<double>& first, const GemmArgs<double>& second) {
  split_gemm_pair(first, second);
}

}  // namespace dsv3::ops::cpu
