// CUDA kernels of ops/elementwise.hpp. Arguments are checked by the dispatch; n is the element count.
#pragma once

#include "dsv3/ops/cuda/backend.hpp"

namespace dsv3::cuda {

// Float storage formats convert() moves between (fp8 e4m3 only as a conversion source or target).
enum class Storage : std::uint8_t { f32, bf16, fp8_e4m3 };

void convert_float(void* dst, Storage dst_type, const void* src, Storage src_type, std::int64_t n, void* stream);
// i64 → i32 with a value outside i32's range throws (naming the first such element) and leaves dst unchanged.
void convert_index(void* dst, Index dst_type, const void* src, Index src_type, std::int64_t n, void* stream);
void round_to_bf16(float* y, const float* x, std::int64_t n, void* stream);
void fill(void* y, Float type, double value, std::int64_t n, void* stream);
void add(void* y, const void* a, const void* b, Float type, std::int64_t n, void* stream);
void axpy(void* y, double alpha, const void* x, Float type, std::int64_t n, void* stream);
void scale(void* y, double alpha, Float type, std::int64_t n, void* stream);

// ops::copy_head_columns on [tokens, heads, row] tensors (one of the head counts may be 1: broadcast or sum).
struct HeadColumns {
  std::int64_t tokens = 0, dst_heads = 1, src_heads = 1, dst_row = 0, src_row = 0;
  std::int64_t dst_column = 0, src_column = 0, width = 0;
};
void copy_head_columns(void* dst, const void* src, Float type, const HeadColumns& columns, void* stream);

}  // namespace dsv3::cuda
