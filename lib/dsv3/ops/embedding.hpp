// Token embedding lookup.
#pragma once

#include "dsv3/ops/common.hpp"

namespace dsv3::ops {

// y[i] = table[ids[i]].  ids: i32/i64 [...] with values in [0, V), table: [V, D], y: [..., D].
// An id out of range is an error naming the position and the value.
void embedding_forward(const Tensor& y, const Tensor& table, const Tensor& ids, Stream stream = {});
// dtable[ids[i]] += dy[i] (accumulated; repeated ids add up, in token order: the same bits on every run).
void embedding_backward(const Tensor& dtable, const Tensor& dy, const Tensor& ids, Stream stream = {});

}  // namespace dsv3::ops
