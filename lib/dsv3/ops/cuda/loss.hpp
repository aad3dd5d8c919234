// CUDA kernels of ops/loss.hpp. Arguments are checked by the dispatch, the target values here (on the device):
// a target outside [0, classes) that is not ignore_index throws, naming the first row, before anything is written
// (each call waits for the stream for that). logits, dlogits: [rows, classes] in `type`; targets: [rows] in
// `index_type`; lse: f32 [rows]; loss: f32, one element.
#pragma once

#include "dsv3/ops/cuda/backend.hpp"

namespace dsv3::cuda {

// lse of every row (ignored ones included) in fp32, from an online max and sum of exponentials; the loss summed
// over the valid rows in double, in a fixed order (the same bits on every run).
void cross_entropy_forward(float* loss, float* lse, const void* logits, Float type, const void* targets,
                           Index index_type, std::int64_t rows, std::int64_t classes, std::int64_t ignore_index,
                           void* stream);
void cross_entropy_backward(void* dlogits, const void* logits, Float type, const float* lse, const void* targets,
                            Index index_type, std::int64_t rows, std::int64_t classes, double dloss,
                            std::int64_t ignore_index, void* stream);
// The count, read back to the host.
std::int64_t count_valid_targets(const void* targets, Index index_type, std::int64_t n, std::int64_t ignore_index,
                                 void* stream);

}  // namespace dsv3::cuda
