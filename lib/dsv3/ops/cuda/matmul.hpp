// CUDA matrix products through cuBLASLt. Row-major like the rest of dsv3; arguments checked by the dispatch.
#pragma once

#include "dsv3/ops/cuda/backend.hpp"

namespace dsv3::cuda {

// One row-major product c = alpha · op(a) · op(b) + beta · c, repeated over `batch` entries whose operands lie
// a_stride, b_stride, c_stride elements apart (b_stride 0: one b shared by every entry).
// a: [m, k] ([k, m] when transpose_a), b: [k, n] ([n, k] when transpose_b), c: [m, n].
struct GemmShape {
  std::int64_t m = 0, n = 0, k = 0;
  bool transpose_a = false, transpose_b = false;
  std::int64_t batch = 1;
  std::int64_t a_stride = 0, b_stride = 0, c_stride = 0;
};

// f32 storage multiplies in bf16 on the tensor cores (CUBLAS_COMPUTE_32F_FAST_16BF), bf16 storage as it is;
// both accumulate in fp32. beta = 0 never reads c.
void gemm(void* c, const void* a, const void* b, Float type, const GemmShape& shape, double alpha, double beta,
          void* stream);

// c = a · b (row-major [m, k]·[k, n]) through plain cublasGemmEx with cuBLAS's default algorithm and the same
// compute type as gemm(): the yardstick the benchmarks hold gemm() and the grouped products to.
void gemm_cublas_reference(void* c, const void* a, const void* b, Float type, std::int64_t m, std::int64_t n,
                           std::int64_t k, void* stream);

// Routed experts, rows sorted by expert: y[rows of e] = x[rows of e] · w[e]ᵀ for every expert with rows.
// offsets: host array of E + 1 row offsets. x: [T, in], w: [E, out, in], y: [T, out].
void grouped_linear_forward(void* y, const void* x, const void* w, Float type, const std::int64_t* offsets,
                            std::int64_t experts, std::int64_t in, std::int64_t out, void* stream);
// dx[rows of e] = dy · w[e] (overwritten, skipped when dx is null; rows of no expert do not exist since
// offsets[E] = T); dw[e] += dy[rows of e]ᵀ · x[rows of e].
void grouped_linear_backward(void* dx, void* dw, const void* dy, const void* x, const void* w, Float type,
                             const std::int64_t* offsets, std::int64_t experts, std::int64_t in, std::int64_t out,
                             void* stream);

}  // namespace dsv3::cuda
