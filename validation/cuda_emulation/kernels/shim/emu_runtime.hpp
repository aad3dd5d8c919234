// Host emulation of the CUDA execution model for g++ (the kernels of routing/elementwise/norm/loss/optim/rope/
// activation/fp8/embedding/checks.cu). Each CTA's threads are cooperative fibers on one OS thread (emu_switch.S),
// blocks run one after another, __shared__ = static (one block at a time), warps sync by per-warp barriers.
// Limits: host float arithmetic, not the GPU's (no FMA contraction, fast-math intrinsics or ftz); the only thread
// interleavings tried are between barriers (EMU_ORDER=0|1|2: ascending, descending, permuted), so races inside a
// barrier interval that no order exposes stay hidden; no memory model, no async streams, one device.
#pragma once
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __restrict__ __restrict
#include <math.h>
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>
#include <tuple>
#include "cuda_bf16.h"
struct dim3 { unsigned x = 1, y = 1, z = 1; constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {} };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct float4 { float x, y, z, w; };
typedef int cudaError_t;
constexpr int cudaSuccess = 0;
inline const char* cudaGetErrorString(int) { return "emu"; }
typedef void* cudaStream_t;
inline int cudaGetLastError() { return 0; }
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
inline int cudaStreamSynchronize(cudaStream_t) { return 0; }
inline int cudaMallocAsync(void** p, std::size_t n, cudaStream_t) {
  *p = std::aligned_alloc(256, (n + 255) / 256 * 256 + 256);
  std::memset(*p, 0xa5, n);  // garbage: uninitialised reads show
  return 0;
}
template <class P> int cudaMallocAsync(P** p, std::size_t n, cudaStream_t s) { return cudaMallocAsync(reinterpret_cast<void**>(p), n, s); }
inline int cudaFreeAsync(void* p, cudaStream_t) { std::free(p); return 0; }
inline int cudaMemcpyAsync(void* d, const void* s, std::size_t n, cudaMemcpyKind, cudaStream_t) { std::memcpy(d, s, n); return 0; }

inline dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

// Cooperative fibers on one OS thread: a CUDA thread runs until it waits at a barrier, then the next one runs.
extern "C" void emu_switch(void** save_sp, void* load_sp);
namespace emu {
struct Barrier {
  int expected = 0, arrived = 0; unsigned generation = 0;
};
struct Fiber { void* sp = nullptr; bool done = false; dim3 idx; int linear = 0; };
inline void* g_scheduler_sp;
inline Fiber* g_current;
inline long long g_progress = 0;
inline void yield() { emu_switch(&g_current->sp, g_scheduler_sp); }
inline void wait(Barrier& b) {
  const unsigned g = b.generation; ++g_progress;
  if (++b.arrived == b.expected) { b.arrived = 0; ++b.generation; return; }
  while (b.generation == g) yield();
}
inline void drop(Barrier& b) {
  --b.expected; ++g_progress;
  if (b.arrived > 0 && b.arrived == b.expected) { b.arrived = 0; ++b.generation; }
}
struct Warp { Barrier bar; std::uint64_t slot[32]; };
struct Block { Barrier bar; std::vector<Warp> warps; int vote = 0; };
inline Block* g_block;
inline int t_linear;
inline unsigned char* g_dynamic_shared;
inline std::size_t g_dynamic_bytes;
inline unsigned char* dynamic_shared() { return g_dynamic_shared; }
inline long long g_launches = 0;
inline Warp& warp() { return g_block->warps[t_linear / 32]; }
inline int lane() { return t_linear % 32; }
template <class V> V exchange(V value, int source) {
  static_assert(sizeof(V) <= 8);
  auto& w = warp();
  std::memcpy(&w.slot[lane()], &value, sizeof(V)); wait(w.bar);
  V r; std::memcpy(&r, &w.slot[source], sizeof(V)); wait(w.bar); return r;
}
template <class V, class Op> V reduce(V v, Op op) {
  auto& w = warp(); const int n = std::min<int>(32, blockDim.x * blockDim.y * blockDim.z - (t_linear / 32) * 32);
  std::memcpy(&w.slot[lane()], &v, sizeof(V)); wait(w.bar);
  V r; std::memcpy(&r, &w.slot[0], sizeof(V));
  for (int l = 1; l < n; ++l) { V x; std::memcpy(&x, &w.slot[l], sizeof(V)); r = op(r, x); }
  wait(w.bar); return r;
}
inline std::function<void()>* g_kernel;
[[noreturn]] inline void trampoline() {
  (*g_kernel)();
  drop(g_block->warps[t_linear / 32].bar);
  drop(g_block->bar);
  g_current->done = true;
  emu_switch(&g_current->sp, g_scheduler_sp);
  std::abort();
}
constexpr std::size_t kStack = 256 * 1024;
inline std::vector<unsigned char>& stacks() { static std::vector<unsigned char> s(kStack * 1024 + 64); return s; }
template <class F>
void launch(dim3 grid, dim3 block, std::size_t shared_bytes, cudaStream_t, F kernel) {
  ++g_launches;
  const unsigned threads = block.x * block.y * block.z;
  if (threads == 0 || threads > 1024 || threads % 32 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
    std::fprintf(stderr, "bad launch grid %u %u %u block %u %u %u\n", grid.x, grid.y, grid.z, block.x, block.y, block.z); std::abort();
  }
  if (shared_bytes > 48 * 1024) { std::fprintf(stderr, "dynamic shared %zu > 48K without attribute\n", shared_bytes); std::abort(); }
  blockDim = block; gridDim = grid;
  std::function<void()> body = kernel; g_kernel = &body;
  std::vector<unsigned char> shared(shared_bytes);  // exact size: ASan sees overruns
  std::vector<Fiber> fibers(threads);
  unsigned char* stack_base = reinterpret_cast<unsigned char*>((reinterpret_cast<std::uintptr_t>(stacks().data()) + 63) / 64 * 64);
  for (unsigned z = 0; z < grid.z; ++z) for (unsigned y = 0; y < grid.y; ++y) for (unsigned x = 0; x < grid.x; ++x) {
    Block context; context.bar.expected = threads;
    context.warps.resize(threads / 32);
    for (auto& w : context.warps) w.bar.expected = 32;
    g_block = &context;
    std::memset(shared.data(), 0xff, shared.size());
    g_dynamic_shared = shared.data();
    g_dynamic_bytes = shared_bytes;
    blockIdx = dim3(x, y, z);
    for (unsigned tid = 0; tid < threads; ++tid) {
      Fiber& f = fibers[tid];
      f.done = false; f.linear = tid; f.idx = dim3(tid % block.x, tid / block.x % block.y, tid / (block.x * block.y));
      auto* top = reinterpret_cast<std::uintptr_t*>(stack_base + kStack * (tid + 1));
      top[-1] = 0; top[-2] = reinterpret_cast<std::uintptr_t>(&trampoline);
      for (int r = 3; r <= 8; ++r) top[-r] = 0;
      f.sp = top - 8;
    }
    unsigned live = threads;
    while (live > 0) {
      const long long before = g_progress; unsigned finished = 0;
      static const int order = std::getenv("EMU_ORDER") ? std::atoi(std::getenv("EMU_ORDER")) : 0;
      for (unsigned k = 0; k < threads; ++k) {
        // 0: ascending thread order, 1: descending, 2: a fixed permutation (odd stride): write-before-read
        // races between barriers show in one of them.
        auto& f = fibers[order == 0 ? k : order == 1 ? threads - 1 - k : (k * 97 + 13) % threads];
        if (f.done) continue;
        g_current = &f; t_linear = f.linear; threadIdx = f.idx;
        emu_switch(&g_scheduler_sp, f.sp);
        if (f.done) { --live; ++finished; }
      }
      if (live > 0 && finished == 0 && g_progress == before) { std::fprintf(stderr, "DEADLOCK: threads wait at barriers that never complete\n"); std::abort(); }
    }
  }
}
}  // namespace emu

inline void __syncthreads() { emu::wait(emu::g_block->bar); }
inline int __syncthreads_or(int p) {
  if (p) emu::g_block->vote = 1;
  emu::wait(emu::g_block->bar);
  const int r = emu::g_block->vote;
  emu::wait(emu::g_block->bar);
  if (emu::t_linear == 0) emu::g_block->vote = 0;
  emu::wait(emu::g_block->bar);
  return r;
}
inline void __syncwarp(unsigned = 0xffffffffu) { emu::wait(emu::warp().bar); }
template <class V> V __shfl_xor_sync(unsigned, V v, int off) { return emu::exchange(v, emu::lane() ^ off); }
template <class V> V __shfl_sync(unsigned, V v, int src) { return emu::exchange(v, src % 32); }
template <class V> V __shfl_down_sync(unsigned, V v, int off) { int s = emu::lane() + off; return emu::exchange(v, s < 32 ? s : emu::lane()); }
inline unsigned __reduce_add_sync(unsigned, unsigned v) { return emu::reduce(v, [](unsigned a, unsigned b) { return a + b; }); }
inline int __reduce_min_sync(unsigned, int v) { return emu::reduce(v, [](int a, int b) { return std::min(a, b); }); }
inline int __reduce_max_sync(unsigned, int v) { return emu::reduce(v, [](int a, int b) { return std::max(a, b); }); }
template <class V> V atomicMin(V* p, V v) { std::atomic_ref<V> a(*p); V old = a.load(); while (v < old && !a.compare_exchange_weak(old, v)) {} return old; }
template <class V> V atomicMax(V* p, V v) { std::atomic_ref<V> a(*p); V old = a.load(); while (v > old && !a.compare_exchange_weak(old, v)) {} return old; }
template <class V> V atomicAdd(V* p, V v) { std::atomic_ref<V> a(*p); return a.fetch_add(v); }
