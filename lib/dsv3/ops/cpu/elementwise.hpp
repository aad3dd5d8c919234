#pragma once

#include "dsv3/ops/elementwise.hpp"

namespace dsv3::ops::cpu {

// Arguments already validated by the public ops of elementwise.hpp (shapes equal, dtypes as documented there).
void convert(const Tensor& dst, const Tensor& src);
void round_to_bf16(const Tensor& y, const Tensor& x);
void fill(const Tensor& y, double value);
void add(const Tensor& y, const Tensor& a, const Tensor& b);
void axpy(const Tensor& y, double alpha, const Tensor& x);
void scale(const Tensor& y, double alpha);
void copy_head_columns(const Tensor& dst, std::int64_t dst_column, const Tensor& src, std::int64_t src_column,
                       std::int64_t width);

}  // namespace dsv3::ops::cpu
