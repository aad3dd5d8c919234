// Cross-entropy fused with the log-sum-exp of the logits: no probability matrix is materialised.
#pragma once

#include "dsv3/ops/common.hpp"

namespace dsv3::ops {

inline constexpr std::int64_t kIgnoreIndex = -100;

// logits: [N, V]; targets: i32/i64 [N] in [0, V) or ignore_index; lse: [N] (kept for backward);
// loss: rank-0 tensor = Σ over valid rows of lse − logits[target] (a sum: the caller divides by the global
// count of valid targets, REFERENCE.md §3). A target outside [0, V) that is not ignore_index is an error.
// lse and loss have the logits' dtype on the CPU and are f32 on CUDA (fp32 statistics for bf16 logits).
void cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& logits, const Tensor& targets,
                           std::int64_t ignore_index = kIgnoreIndex, Stream stream = {});
// dlogits = dloss · (softmax(logits) − onehot(target)) on valid rows, 0 on ignored rows (overwritten).
void cross_entropy_backward(const Tensor& dlogits, const Tensor& logits, const Tensor& lse, const Tensor& targets,
                            double dloss, std::int64_t ignore_index = kIgnoreIndex, Stream stream = {});

// The number of targets that are not ignore_index.
std::int64_t count_valid_targets(const Tensor& targets, std::int64_t ignore_index = kIgnoreIndex);

}  // namespace dsv3::ops
