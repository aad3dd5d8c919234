#include "dsv3/ops/cuda/checks.hpp"

#include "dsv3/ops/cuda/common.cuh"

namespace dsv3::cuda {

namespace {

constexpr int kThreads = 256;

// first_bad: the smallest flagged index, n when none is (atomicMin: the order the threads run in does not matter).
template <class Index>
__global__ void find_out_of_range_kernel(const Index* values, std::int64_t n, std::int64_t low, std::int64_t high,
                                         std::int64_t also_valid, unsigned long long* first_bad) {
  for (std::int64_t i = first_index(); i < n; i += index_stride()) {
    const std::int64_t value = values[i];
    if ((value < low || value >= high) && value != also_valid) {
      atomicMin(first_bad, static_cast<unsigned long long>(i));
    }
  }
}

}  // namespace

OutOfRange find_out_of_range(const void* values, Index type, std::int64_t n, std::int64_t low, std::int64_t high,
                             std::int64_t also_valid, void* stream, const char* op) {
  if (n == 0) return {};
  StreamBuffer<unsigned long long> first_bad(1, stream, op);
  first_bad.set(static_cast<unsigned long long>(n));
  OutOfRange result;
  with_index(type, [&](auto tag) {
    using I = typename decltype(tag)::type;
    const I* typed = static_cast<const I*>(values);
    find_out_of_range_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(typed, n, low, high, also_valid,
                                                                                        first_bad.get());
    check_launch(op);
    const auto bad = static_cast<std::int64_t>(first_bad.read());
    if (bad < n) result = {bad, static_cast<std::int64_t>(read_element(typed + bad, stream, op))};
  });
  return result;
}

}  // namespace dsv3::cuda
