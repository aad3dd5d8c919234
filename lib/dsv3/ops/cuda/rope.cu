#include "dsv3/ops/cuda/rope.hpp"

#include "dsv3/ops/cuda/checks.hpp"
#include "dsv3/ops/cuda/common.cuh"

namespace dsv3::cuda {

namespace {

constexpr int kThreads = 256;

// One thread per pair (x[2i], x[2i+1]) of one head of one token: consecutive threads read consecutive pairs.
// Each pair is read whole before it is written, so y may alias x. sin_sign −1: the inverse (transposed) rotation.
template <class T, class Table>
__global__ void rope_kernel(T* y, const T* x, const Table* cos, const Table* sin, const std::int32_t* positions,
                            std::int64_t tokens, std::int64_t heads, std::int64_t pairs, float sin_sign) {
  const std::int64_t n = tokens * heads * pairs;
  for (std::int64_t i = first_index(); i < n; i += index_stride()) {
    const std::int64_t pair = i % pairs;
    const std::int64_t token = i / (heads * pairs);
    const std::int64_t table_index = std::int64_t{positions[token]} * pairs + pair;
    const float c = to_float(cos[table_index]);
    const float s = sin_sign * to_float(sin[table_index]);
    const float x0 = to_float(x[2 * i]), x1 = to_float(x[2 * i + 1]);
    y[2 * i] = from_float<T>(x0 * c - x1 * s);
    y[2 * i + 1] = from_float<T>(x0 * s + x1 * c);
  }
}

}  // namespace

void rope_rotate(void* y, const void* x, Float type, const void* cos, const void* sin, Float table_type,
                 const std::int32_t* positions, std::int64_t tokens, std::int64_t heads, std::int64_t pairs,
                 std::int64_t table_rows, bool inverse, void* stream, const char* op) {
  const OutOfRange bad = find_out_of_range(positions, Index::i32, tokens, 0, table_rows, 0, stream, op);
  DSV3_CHECK(bad.index < 0, "{}: positions[{}] is {}, expected a position in [0, {}) (the rows of the cos/sin table)",
             op, bad.index, bad.value, table_rows);
  const std::int64_t n = tokens * heads * pairs;
  if (n == 0) return;
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    with_float(table_type, [&](auto table_tag) {
      using Table = typename decltype(table_tag)::type;
      rope_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(
          static_cast<T*>(y), static_cast<const T*>(x), static_cast<const Table*>(cos), static_cast<const Table*>(sin),
          positions, tokens, heads, pairs, inverse ? -1.0f : 1.0f);
    });
  });
  check_launch(op);
}

}  // namespace dsv3::cuda
