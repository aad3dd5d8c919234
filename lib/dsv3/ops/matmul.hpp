// Matrix products: general (batched, any transposes), the linear layer, and the grouped linear layer of
// the routed experts. All weights are [out, in] as in PyTorch and the HF checkpoints.
#pragma once

#include "dsv3/ops/common.hpp"

namespace dsv3::ops {

struct GemmOptions {
  bool transpose_a = false;
  bool transpose_b = false;
  double alpha = 1.0;
  double beta = 0.0;  // 0: c is overwritten (its old contents may be NaN); 1: accumulate into c
};

// c = alpha · op(a) · op(b) + beta · c, op = optional transpose of the last two axes.
// a: [m, k] ([k, m] transposed), b: [k, n] ([n, k] transposed), c: [m, n]; or all three rank 3 with one
// batch extent; a rank-2 b with rank-3 a and c is shared by every batch entry.
void matmul(const Tensor& c, const Tensor& a, const Tensor& b, const GemmOptions& options = {}, Stream stream = {});

// c = a · b through cuBLAS's plain cublasGemmEx (CUDA tensors, rank 2, no options): the yardstick of the GPU
// benchmarks for matmul and the grouped products.
void cublas_reference_matmul(const Tensor& c, const Tensor& a, const Tensor& b, Stream stream = {});

// y = x · wᵀ.  x: [..., in], w: [out, in], y: [..., out].
void linear_forward(const Tensor& y, const Tensor& x, const Tensor& w, Stream stream = {});
// dx = dy · w (overwritten; skipped when dx is undefined), dw += dyᵀ · x (accumulated).
void linear_backward(const Tensor& dx, const Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                     Stream stream = {});

// Routed experts: rows of x sorted by expert, expert e owns rows [offsets[e], offsets[e+1]) (possibly none).
// x: [T, in], w: [E, out, in], offsets: i64 [E + 1] on the host with offsets[0] = 0 and offsets[E] = T,
// y: [T, out]; y[r] = x[r] · w[e(r)]ᵀ.
void grouped_linear_forward(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& offsets,
                            Stream stream = {});
// dx overwritten (skipped when undefined), dw accumulated.
void grouped_linear_backward(const Tensor& dx, const Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                             const Tensor& offsets, Stream stream = {});

}  // namespace dsv3::ops
