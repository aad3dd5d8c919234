// Row-major GEMM on raw pointers through CBLAS, for f32 and f64: the building block of the CPU matmuls
// and of the tiled attention.
#pragma once

#include <cblas.h>

namespace dsv3::ops::cpu {

// c = alpha · op(a) · op(b) + beta · c; op(a) is [m, k], op(b) is [k, n], c is [m, n]; row-major with
// leading dimensions lda, ldb, ldc.
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

}  // namespace dsv3::ops::cpu
