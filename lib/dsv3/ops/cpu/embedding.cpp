#include "dsv3/ops/cpu/embedding.hpp"

#include "dsv3/ops/cpu/dispatch.hpp"

#include <algorithm>
#include <cstdint>

namespace dsv3::ops::cpu {

namespace {

// Serial, before the parallel loops: an exception must not leave an OpenMP region.
template <class Index>
void check_ids(const char* op, const Index* id, std::int64_t count, std::int64_t vocab) {
  for (std::int64_t i = 0; i < count; ++i) {
    DSV3_CHECK(id[i] >= 0 && id[i] < vocab, "{}: the id at position {} is {}, expected a token id in [0, {})", op, i,
               static_cast<std::int64_t>(id[i]), vocab);
  }
}

}  // namespace

void embedding_forward(const Tensor& y, const Tensor& table, const Tensor& ids) {
  const std::int64_t vocab = table.size(0);
  const std::int64_t dim = table.size(1);
  const std::int64_t tokens = ids.numel();
  with_index_type(ids.dtype(), "embedding_forward", [&]<class Index>() {
    const Index* id = ids.data<Index>();
    check_ids("embedding_forward", id, tokens, vocab);
    with_float_type(table.dtype(), "embedding_forward", [&]<class T>() {
      const T* rows = table.data<T>();  // [V, D]
      T* out = y.data<T>();             // [tokens, D]
#pragma omp parallel for
      for (std::int64_t i = 0; i < tokens; ++i) std::copy_n(rows + id[i] * dim, dim, out + i * dim);
    });
  });
}

void embedding_backward(const Tensor& dtable, const Tensor& dy, const Tensor& ids) {
  const std::int64_t vocab = dtable.size(0);
  const std::int64_t dim = dtable.size(1);
  const std::int64_t tokens = ids.numel();
  with_index_type(ids.dtype(), "embedding_backward", [&]<class Index>() {
    const Index* id = ids.data<Index>();
    check_ids("embedding_backward", id, tokens, vocab);
    with_float_type(dtable.dtype(), "embedding_backward", [&]<class T>() {
      const T* dout = dy.data<T>();  // [tokens, D]
      T* drows = dtable.data<T>();   // [V, D]
      // Repeated ids scatter into the same row, so the threads split the columns (one writer per dtable
      // element) and each walks the tokens in order: no races, and sums independent of the thread count.
      constexpr std::int64_t kColumnBlock = 64;
      const std::int64_t blocks = (dim + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for
      for (std::int64_t block = 0; block < blocks; ++block) {
        const std::int64_t first = block * kColumnBlock;
        const std::int64_t width = std::min(kColumnBlock, dim - first);
        for (std::int64_t i = 0; i < tokens; ++i) {
          const T* dy_row = dout + i * dim + first;
          T* drow = drows + id[i] * dim + first;
          for (std::int64_t c = 0; c < width; ++c) drow[c] += dy_row[c];
        }
      }
    });
  });
}

}  // namespace dsv3::ops::cpu
