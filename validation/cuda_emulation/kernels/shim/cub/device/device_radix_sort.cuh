// Stand-in for CUB's DeviceRadixSort::SortPairs: a stable host sort on the selected key bits, which is the
// ordering CUB guarantees; CUB's temp-storage sizing and its GPU implementation are not exercised.
#pragma once
#include <algorithm>
#include <numeric>
#include <vector>
namespace cub {
struct DeviceRadixSort {
  // Stable LSD radix sort semantics: ordered by key bits [begin_bit, end_bit), equal keys keep input order.
  template <class K, class V>
  static cudaError_t SortPairs(void* temp, std::size_t& bytes, const K* keys_in, K* keys_out, const V* values_in,
                               V* values_out, int n, int begin_bit = 0, int end_bit = sizeof(K) * 8, cudaStream_t = nullptr) {
    if (temp == nullptr) { bytes = 1024; return cudaSuccess; }
    const unsigned long long mask = (end_bit >= 64 ? ~0ull : ((1ull << end_bit) - 1)) & ~((1ull << begin_bit) - 1);
    std::vector<int> order(n); std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return (keys_in[a] & mask) < (keys_in[b] & mask); });
    std::vector<K> k(n); std::vector<V> v(n);
    for (int i = 0; i < n; ++i) { k[i] = keys_in[order[i]]; v[i] = values_in[order[i]]; }
    std::copy(k.begin(), k.end(), keys_out); std::copy(v.begin(), v.end(), values_out);
    return cudaSuccess;
  }
};
}  // namespace cub
