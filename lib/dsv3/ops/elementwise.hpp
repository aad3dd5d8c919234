// Element-wise arithmetic and dtype conversion.
#pragma once

#include "dsv3/ops/common.hpp"

namespace dsv3::ops {

// dst = src converted to dst's dtype (same shape): float dtypes among themselves (bf16 and fp8 e4m3 round to
// nearest even with a single rounding, also from f64; fp8 saturates at ±448), index dtypes among themselves
// (i64 → i32 out of range is an error, and dst is then left unchanged).
void convert(const Tensor& dst, const Tensor& src, Stream stream = {});
// y = x rounded to bf16 precision, kept in f32 (emulates bf16 storage in f32 arithmetic).
void round_to_bf16(const Tensor& y, const Tensor& x, Stream stream = {});

void fill(const Tensor& y, double value, Stream stream = {});
// y = a + b (y may alias a or b).
void add(const Tensor& y, const Tensor& a, const Tensor& b, Stream stream = {});
// y += alpha · x.
void axpy(const Tensor& y, double alpha, const Tensor& x, Stream stream = {});
// y *= alpha.
void scale(const Tensor& y, double alpha, Stream stream = {});

// dst[t, h, dst_column + i] = src[t, h, src_column + i] for i < width, on [T, heads, row] tensors of different row
// widths: how MLA's per-head [nope | rope] and [k_nope | v] parts are cut apart and put together, since tensors are
// contiguous only. With one head on one side, src's single head is broadcast to every head of dst (k_pe is shared
// by all heads), and dst's single head receives the sum over src's heads: the adjoint of that broadcast, k_pe's
// gradient. Columns of dst outside the range are left as they are.
void copy_head_columns(const Tensor& dst, std::int64_t dst_column, const Tensor& src, std::int64_t src_column,
                       std::int64_t width, Stream stream = {});

}  // namespace dsv3::ops
