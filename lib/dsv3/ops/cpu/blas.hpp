// Row-major GEMM on raw pointers through CBLAS, for f32 and f64: the building block of the CPU matmuls
// and of the tiled attention.
//
// Threads: the CPU backend parallelises with OpenMP alone and runs OpenBLAS on one thread. Debian's OpenBLAS is
// the pthread build, with a thread pool of its own; between BLAS calls its threads spin and yield while the
// OpenMP team works, and the OpenMP threads spin while BLAS works, so the two pools fight over the cores
// (measured: the debug model's training step ran slower on 2 threads than on 1, a third of the samples in
// sched_yield and OpenMP's spin loop). parallel_gemm therefore splits one product into panels, one serial BLAS
// call per OpenMP thread, and the kernels that parallelise over their own blocks call gemm inside their region.
#pragma once

#include <cblas.h>

namespace dsv3::ops::cpu {

// Holds OpenBLAS to one thread, whatever set it higher (OPENBLAS_NUM_THREADS, dsv3_train's thread setup). Every
// op that runs BLAS calls it first, outside any parallel region.
void use_serial_blas();

// c = alpha · op(a) · op(b) + beta · c; op(a) is [m, k], op(b) is [k, n], c is [m, n]; row-major with
// leading dimensions lda, ldb, ldc. On the calling thread.
inline void gemm(bool transpose_a, bool transpose_b, int m, int n, int k, float alpha, const float* a, int lda,
                 const float* b, int ldb, float beta, float* c, int ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans, m, n,
              k, alpha, a, lda, b, ldb, beta, c, ldc);
}

inline void gemm(bool transpose_a, bool transpose_b, int m, int n, int k, double alpha, const double* a, int lda,
                 const double* b, int ldb, double beta, double* c, int ldc) {
  if (m == 0 || n == 0) return;
  cblas_dgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans, m, n,
              k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// One product c = alpha · op(a) · op(b) + beta · c, as gemm takes it.
template <class T>
struct GemmArgs {
  bool transpose_a, transpose_b;
  int m, n, k;
  T alpha;
  const T* a;
  int lda;
  const T* b;
  int ldb;
  T beta;
  T* c;
  int ldc;
};

// The same product across the OpenMP threads: c's rows (or columns) cut into one panel per thread, each a serial
// gemm. The cut depends only on the extents and the thread count, so results repeat bit for bit for a given
// thread count. Runs on the calling thread inside a parallel region or when the product is too small to share.
void parallel_gemm(const GemmArgs<float>& product);
void parallel_gemm(const GemmArgs<double>& product);

// Two independent products at once (a linear layer's dx and dw): half the threads cut the first, the others
// the second, so that on two threads each runs one whole product and no operand is packed twice.
void parallel_gemm_pair(const GemmArgs<float>& first, const GemmArgs<float>& second);
void parallel_gemm_pair(const GemmArgs<double>& first, const GemmArgs<double>& second);

}  // namespace dsv3::ops::cpu
