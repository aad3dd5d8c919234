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

}  // namespace dsv3::ops
