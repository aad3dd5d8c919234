#include "dsv3/ops/cuda/embedding.hpp"

#include "dsv3/ops/cuda/checks.hpp"
#include "dsv3/ops/cuda/common.cuh"

#include <cub/device/device_radix_sort.cuh>

#include <limits>

namespace dsv3::cuda {

namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxRowBlocks = 1u << 16;

void check_ids(const void* ids, Index index_type, std::int64_t tokens, std::int64_t vocab, void* stream,
               const char* op) {
  const OutOfRange bad = find_out_of_range(ids, index_type, tokens, 0, vocab, 0, stream, op);
  DSV3_CHECK(bad.index < 0, "{}: the id at position {} is {}, expected a token id in [0, {})", op, bad.index, bad.value,
             vocab);
}

// y[token] = table[ids[token]], rows moved as `units_per_row` Units (16-byte vectors or single elements):
// consecutive threads copy consecutive units of a row.
template <class Unit, class I>
__global__ void embedding_gather_kernel(Unit* y, const Unit* table, const I* ids, std::int64_t tokens,
                                        std::int64_t units_per_row) {
  const std::int64_t n = tokens * units_per_row;
  for (std::int64_t i = first_index(); i < n; i += index_stride()) {
    const std::int64_t token = i / units_per_row;
    const std::int64_t unit = i - token * units_per_row;
    y[i] = table[static_cast<std::int64_t>(ids[token]) * units_per_row + unit];
  }
}

// The sort's input: keys = ids (validated: in [0, vocab) with vocab <= 2^31), values = token positions.
template <class I>
__global__ void sort_input_kernel(std::uint32_t* keys, std::int32_t* positions, const I* ids, std::int64_t tokens) {
  for (std::int64_t i = first_index(); i < tokens; i += index_stride()) {
    keys[i] = static_cast<std::uint32_t>(ids[i]);
    positions[i] = static_cast<std::int32_t>(i);
  }
}

// One block per run of equal ids in the sorted order (the block at the run's first entry does the work, the others
// skip): each thread takes columns and sums the run's dy rows in token order (the sort is stable), then adds the
// sum to the table row once.
template <class T>
__global__ void embedding_scatter_kernel(T* dtable, const T* dy, const std::uint32_t* sorted_ids,
                                         const std::int32_t* sorted_positions, std::int64_t tokens, std::int64_t dim) {
  for (std::int64_t first = blockIdx.x; first < tokens; first += gridDim.x) {
    const std::uint32_t id = sorted_ids[first];
    if (first > 0 && sorted_ids[first - 1] == id) continue;  // not the start of a run (the same for the whole block)
    std::int64_t end = first + 1;
    while (end < tokens && sorted_ids[end] == id) ++end;
    T* drow = dtable + static_cast<std::int64_t>(id) * dim;
    for (std::int64_t col = threadIdx.x; col < dim; col += blockDim.x) {
      float sum = 0.0f;
      for (std::int64_t j = first; j < end; ++j) sum += to_float(dy[std::int64_t{sorted_positions[j]} * dim + col]);
      drow[col] = from_float<T>(to_float(drow[col]) + sum);
    }
  }
}

}  // namespace

void embedding_forward(void* y, const void* table, Float type, const void* ids, Index index_type, std::int64_t tokens,
                       std::int64_t vocab, std::int64_t dim, void* stream) {
  const char* op = "embedding_forward";
  check_ids(ids, index_type, tokens, vocab, stream, op);
  if (tokens == 0 || dim == 0) return;
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    with_index(index_type, [&](auto index_tag) {
      using I = typename decltype(index_tag)::type;
      const I* typed_ids = static_cast<const I*>(ids);
      const std::int64_t row_bytes = dim * static_cast<std::int64_t>(sizeof(T));
      if (row_bytes % 16 == 0 && aligned16({y, table})) {
        const std::int64_t units = row_bytes / 16;
        embedding_gather_kernel<<<grid_for(tokens * units, kThreads), kThreads, 0, as_stream(stream)>>>(
            static_cast<uint4*>(y), static_cast<const uint4*>(table), typed_ids, tokens, units);
      } else {
        embedding_gather_kernel<<<grid_for(tokens * dim, kThreads), kThreads, 0, as_stream(stream)>>>(
            static_cast<T*>(y), static_cast<const T*>(table), typed_ids, tokens, dim);
      }
    });
  });
  check_launch(op);
}

void embedding_backward(void* dtable, const void* dy, Float type, const void* ids, Index index_type,
                        std::int64_t tokens, std::int64_t vocab, std::int64_t dim, void* stream) {
  const char* op = "embedding_backward";
  check_ids(ids, index_type, tokens, vocab, stream, op);
  if (tokens == 0 || dim == 0) return;
  DSV3_CHECK(tokens <= std::numeric_limits<std::int32_t>::max() && vocab <= (std::int64_t{1} << 31),
             "{}: {} tokens and a vocabulary of {}: the CUDA kernel sorts 32-bit ids and positions", op, tokens, vocab);
  // The sort's input in the first `tokens` entries, its output in the next.
  StreamBuffer<std::uint32_t> keys(2 * tokens, stream, op);
  StreamBuffer<std::int32_t> positions(2 * tokens, stream, op);
  with_index(index_type, [&](auto index_tag) {
    using I = typename decltype(index_tag)::type;
    sort_input_kernel<<<grid_for(tokens, kThreads), kThreads, 0, as_stream(stream)>>>(
        keys.get(), positions.get(), static_cast<const I*>(ids), tokens);
  });
  check_launch(op);
  int key_bits = 1;  // ids are below vocab <= 2^key_bits: the sort skips the higher bits
  while ((std::int64_t{1} << key_bits) < vocab) ++key_bits;
  const int items = static_cast<int>(tokens);
  std::size_t scratch_bytes = 0;
  check_cuda(cub::DeviceRadixSort::SortPairs(nullptr, scratch_bytes, keys.get(), keys.get() + tokens, positions.get(),
                                             positions.get() + tokens, items, 0, key_bits, as_stream(stream)),
             op, "cub::DeviceRadixSort::SortPairs");
  StreamBuffer<unsigned char> scratch(static_cast<std::int64_t>(std::max<std::size_t>(scratch_bytes, 1)), stream, op);
  check_cuda(
      cub::DeviceRadixSort::SortPairs(scratch.get(), scratch_bytes, keys.get(), keys.get() + tokens, positions.get(),
                                      positions.get() + tokens, items, 0, key_bits, as_stream(stream)),
      op, "cub::DeviceRadixSort::SortPairs");
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const unsigned blocks = static_cast<unsigned>(std::min<std::int64_t>(tokens, kMaxRowBlocks));
    embedding_scatter_kernel<<<blocks, threads_for(dim, kThreads), 0, as_stream(stream)>>>(
        static_cast<T*>(dtable), static_cast<const T*>(dy), keys.get() + tokens, positions.get() + tokens, tokens, dim);
  });
  check_launch(op);
}

}  // namespace dsv3::cuda
