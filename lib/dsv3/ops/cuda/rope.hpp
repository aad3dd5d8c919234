// CUDA kernels of ops/rope.hpp. Arguments are checked by the dispatch, the positions here (on the device).
#pragma once

#include "dsv3/ops/cuda/backend.hpp"

namespace dsv3::cuda {

// x, y: [tokens, heads, 2·pairs] in `type` (y may alias x); cos, sin: [table_rows, pairs] in `table_type` (x's
// type or f32); positions: i32 [tokens]. A position outside [0, table_rows) throws, naming the first one, before
// anything is written. `inverse`: rotate by the transpose (backward).
void rope_rotate(void* y, const void* x, Float type, const void* cos, const void* sin, Float table_type,
                 const std::int32_t* positions, std::int64_t tokens, std::int64_t heads, std::int64_t pairs,
                 std::int64_t table_rows, bool inverse, void* stream, const char* op);

}  // namespace dsv3::cuda
