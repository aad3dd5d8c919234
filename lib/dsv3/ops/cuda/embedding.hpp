// CUDA kernels of ops/embedding.hpp. Arguments are checked by the dispatch, the id values here (on the device).
// table, dtable: [vocab, dim] and y, dy: [tokens, dim] in `type`; ids: [tokens] in `index_type`. An id outside
// [0, vocab) throws, naming the first one, before anything is written (each call waits for the stream for that).
#pragma once

#include "dsv3/ops/cuda/backend.hpp"

namespace dsv3::cuda {

void embedding_forward(void* y, const void* table, Float type, const void* ids, Index index_type, std::int64_t tokens,
                       std::int64_t vocab, std::int64_t dim, void* stream);
// dtable[ids[i]] += dy[i]: the tokens are sorted by id (a stable radix sort) and each table row adds its tokens'
// rows in token order, so the sums are the same bits on every run (no float atomics).
void embedding_backward(void* dtable, const void* dy, Float type, const void* ids, Index index_type,
                        std::int64_t tokens, std::int64_t vocab, std::int64_t dim, void* stream);

}  // namespace dsv3::cuda
