// Host emulation of the CUDA features the flash-attention kernels (attention_{forward,backward}.cu) use: each CTA
// runs as 128 OS threads synchronised with std::barrier (block and per-warp), ldmatrix and mma.m16n8k16 emulated
// from the PTX ISA fragment tables, cp.async as a copy deferred to the wait (early reads see stale data).
// Limits: mma accumulates in double then rounds to float (the GPU's internal order differs); thread orders are
// whatever the OS scheduler gives between barriers (not exhaustive); no memory model; one block at a time.
#pragma once
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#include <algorithm>
#include <barrier>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>
#include "cuda_bf16.h"
using std::min; using std::max;
struct dim3 { unsigned x = 1, y = 1, z = 1; dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {} };
struct uint4 { unsigned x, y, z, w; };
struct float4 { float x, y, z, w; };
typedef int cudaError_t;
constexpr int cudaSuccess = 0;
inline const char* cudaGetErrorString(int) { return "emu"; }
typedef void* cudaStream_t;
enum { cudaFuncAttributeMaxDynamicSharedMemorySize };
template <class K> int cudaFuncSetAttribute(K, int, int) { return 0; }
inline int cudaGetLastError() { return 0; }

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
struct WarpExchange { std::barrier<> bar{32}; std::uint64_t slot[32][4]; const void* ptr[32]; };
struct BlockContext { std::barrier<> block{128}; WarpExchange warps[4]; };
inline BlockContext* g_block;
inline unsigned char* g_shared_begin; inline std::size_t g_shared_bytes;
inline WarpExchange& my_warp() { return g_block->warps[threadIdx.x / 32 % 4]; }
inline void __syncthreads() { g_block->block.arrive_and_wait(); }
template <class V> V exchange(V value, int source) {
  auto& w = my_warp(); const int lane = threadIdx.x % 32;
  std::memcpy(&w.slot[lane][0], &value, sizeof(V)); w.bar.arrive_and_wait();
  V r; std::memcpy(&r, &w.slot[source][0], sizeof(V)); w.bar.arrive_and_wait(); return r;
}
inline float __shfl_xor_sync(unsigned, float v, int off) { return exchange(v, (threadIdx.x % 32) ^ off); }
inline double __shfl_xor_sync(unsigned, double v, int off) { return exchange(v, (threadIdx.x % 32) ^ off); }
template <class Op> int reduce_int(int v, Op op) {
  auto& w = my_warp(); const int lane = threadIdx.x % 32;
  std::memcpy(&w.slot[lane][0], &v, 4); w.bar.arrive_and_wait();
  int r; std::memcpy(&r, &w.slot[0][0], 4);
  for (int l = 1; l < 32; ++l) { int x; std::memcpy(&x, &w.slot[l][0], 4); r = op(r, x); }
  w.bar.arrive_and_wait(); return r;
}
inline int __reduce_min_sync(unsigned, int v) { return reduce_int(v, [](int a, int b) { return std::min(a, b); }); }
inline int __reduce_max_sync(unsigned, int v) { return reduce_int(v, [](int a, int b) { return std::max(a, b); }); }

inline void check_shared(const void* p, std::size_t bytes) {
  const auto* c = static_cast<const unsigned char*>(p);
  if (c < g_shared_begin || c + bytes > g_shared_begin + g_shared_bytes || reinterpret_cast<std::uintptr_t>(c) % 16) {
    std::fprintf(stderr, "bad ldmatrix address offset %td (shared bytes %zu)\n", c - g_shared_begin, g_shared_bytes);
    std::abort();
  }
}
inline void emu_ldmatrix(std::uint32_t fragment[4], const void* row, bool transposed) {
  auto& w = my_warp(); const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  check_shared(row, 16);
  w.ptr[lane] = row; w.bar.arrive_and_wait();
  for (int m = 0; m < 4; ++m) {
    std::uint16_t low, high;
    if (!transposed) {
      const auto* r = static_cast<const std::uint16_t*>(w.ptr[8 * m + g]);
      low = r[2 * t]; high = r[2 * t + 1];
    } else {
      low = static_cast<const std::uint16_t*>(w.ptr[8 * m + 2 * t])[g];
      high = static_cast<const std::uint16_t*>(w.ptr[8 * m + 2 * t + 1])[g];
    }
    fragment[m] = low | std::uint32_t(high) << 16;
  }
  w.bar.arrive_and_wait();
}
inline float bf16_half(std::uint32_t word, int high) {
  return __bfloat162float(__nv_bfloat16{static_cast<unsigned short>(high ? word >> 16 : word & 0xffff)});
}
// PTX ISA fragment tables of mma.m16n8k16 .bf16, written independently of the kernels' helpers.
inline void emu_mma(float c[4], const std::uint32_t a[4], std::uint32_t b0, std::uint32_t b1) {
  auto& w = my_warp(); const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  w.slot[lane][0] = a[0] | std::uint64_t(a[1]) << 32; w.slot[lane][1] = a[2] | std::uint64_t(a[3]) << 32;
  w.slot[lane][2] = b0 | std::uint64_t(b1) << 32; w.bar.arrive_and_wait();
  auto A = [&](int row, int k) {  // a0,a1: (g, 2t..), a2,a3: (g+8, 2t..), a4,a5: (g, 2t+8..), a6,a7: (g+8, 2t+8..)
    const int src = (row % 8) * 4 + (k % 8) / 2, reg = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
    const std::uint32_t word = std::uint32_t(w.slot[src][reg / 2] >> (32 * (reg % 2)));
    return bf16_half(word, k % 2);
  };
  auto B = [&](int k, int n) {  // b0,b1: (k 2t.., n g), b2,b3: (k 2t+8.., n g)
    const int src = n * 4 + (k % 8) / 2, reg = k >= 8 ? 1 : 0;
    const std::uint32_t word = std::uint32_t(w.slot[src][2] >> (32 * reg));
    return bf16_half(word, k % 2);
  };
  float out[4];
  for (int e = 0; e < 4; ++e) {
    const int row = g + (e >= 2 ? 8 : 0), col = 2 * t + e % 2;
    double sum = c[e];
    for (int k = 0; k < 16; ++k) sum += double(A(row, k)) * B(k, col);
    out[e] = float(sum);
  }
  w.bar.arrive_and_wait();
  for (int e = 0; e < 4; ++e) c[e] = out[e];
}
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost };
inline int cudaStreamSynchronize(cudaStream_t) { return 0; }
template <class P> int cudaMallocAsync(P** p, std::size_t n, cudaStream_t) { *p = static_cast<P*>(std::malloc(n)); return 0; }
inline int cudaFreeAsync(void* p, cudaStream_t) { std::free(p); return 0; }
inline int cudaMemcpyAsync(void* d, const void* s, std::size_t n, cudaMemcpyKind, cudaStream_t) { std::memcpy(d, s, n); return 0; }
// cp.async emulated as a deferred copy: queued per thread, done at wait (so a read before the wait sees stale data).
struct PendingCopy { void* dst; unsigned char bytes[16]; };
inline thread_local std::vector<PendingCopy> g_pending;
inline void emu_copy16(void* shared, const void* global, bool valid) {
  check_shared(shared, 16);
  PendingCopy copy{shared, {}};
  if (valid) std::memcpy(copy.bytes, global, 16);
  g_pending.push_back(copy);
}
inline void emu_wait() { for (auto& c : g_pending) std::memcpy(c.dst, c.bytes, 16); g_pending.clear(); }
