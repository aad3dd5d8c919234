#include "dsv3/ops/cuda/activation.hpp"

#include "dsv3/ops/cuda/common.cuh"

namespace dsv3::cuda {

namespace {

constexpr int kThreads = 256;

// 1 / (1 + e^−x) with exp only of −|x| (no overflow), the CPU's formula.
__device__ __forceinline__ float sigmoid(float x) {
  const float e = expf(-fabsf(x));
  return (x >= 0.0f ? 1.0f : e) / (1.0f + e);
}

__device__ __forceinline__ float swiglu(float g, float u) { return g * sigmoid(g) * u; }

// silu'(g) = s·(1 + g·(1 − s)) with s = sigmoid(g).
__device__ __forceinline__ void swiglu_gradient(float& dg, float& du, float d, float g, float u) {
  const float s = sigmoid(g);
  dg = d * u * s * (1.0f + g * (1.0f - s));
  du = d * g * s;
}

// Both kernels: N elements at a time (the pointers aligned for Pack<T, N>), then the n % N tail one by one. Every
// input of an element is read before its outputs are written, so outputs may alias inputs.
template <class T, int N>
__global__ void swiglu_forward_kernel(T* h, const T* gate, const T* up, std::int64_t n) {
  const std::int64_t packs = n / N;
  for (std::int64_t p = first_index(); p < packs; p += index_stride()) {
    const Pack<T, N> g = reinterpret_cast<const Pack<T, N>*>(gate)[p];
    const Pack<T, N> u = reinterpret_cast<const Pack<T, N>*>(up)[p];
    Pack<T, N> out;
#pragma unroll
    for (int k = 0; k < N; ++k) out.values[k] = from_float<T>(swiglu(to_float(g.values[k]), to_float(u.values[k])));
    reinterpret_cast<Pack<T, N>*>(h)[p] = out;
  }
  for (std::int64_t i = packs * N + first_index(); i < n; i += index_stride()) {
    h[i] = from_float<T>(swiglu(to_float(gate[i]), to_float(up[i])));
  }
}

template <class T, int N>
__global__ void swiglu_backward_kernel(T* dgate, T* dup, const T* dh, const T* gate, const T* up, std::int64_t n) {
  const std::int64_t packs = n / N;
  for (std::int64_t p = first_index(); p < packs; p += index_stride()) {
    const Pack<T, N> d = reinterpret_cast<const Pack<T, N>*>(dh)[p];
    const Pack<T, N> g = reinterpret_cast<const Pack<T, N>*>(gate)[p];
    const Pack<T, N> u = reinterpret_cast<const Pack<T, N>*>(up)[p];
    Pack<T, N> dg, du;
#pragma unroll
    for (int k = 0; k < N; ++k) {
      float dg_k, du_k;
      swiglu_gradient(dg_k, du_k, to_float(d.values[k]), to_float(g.values[k]), to_float(u.values[k]));
      dg.values[k] = from_float<T>(dg_k);
      du.values[k] = from_float<T>(du_k);
    }
    reinterpret_cast<Pack<T, N>*>(dgate)[p] = dg;
    reinterpret_cast<Pack<T, N>*>(dup)[p] = du;
  }
  for (std::int64_t i = packs * N + first_index(); i < n; i += index_stride()) {
    float dg_i, du_i;
    swiglu_gradient(dg_i, du_i, to_float(dh[i]), to_float(gate[i]), to_float(up[i]));
    dgate[i] = from_float<T>(dg_i);
    dup[i] = from_float<T>(du_i);
  }
}

}  // namespace

void swiglu_forward(void* h, const void* gate, const void* up, Float type, std::int64_t n, void* stream) {
  if (n == 0) return;
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    with_pack_width<T>(aligned16({h, gate, up}), [&](auto width) {
      constexpr int N = decltype(width)::value;
      swiglu_forward_kernel<T, N><<<grid_for(n / N + 1, kThreads), kThreads, 0, as_stream(stream)>>>(
          static_cast<T*>(h), static_cast<const T*>(gate), static_cast<const T*>(up), n);
    });
  });
  check_launch("swiglu_forward");
}

void swiglu_backward(void* dgate, void* dup, const void* dh, const void* gate, const void* up, Float type,
                     std::int64_t n, void* stream) {
  if (n == 0) return;
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    with_pack_width<T>(aligned16({dgate, dup, dh, gate, up}), [&](auto width) {
      constexpr int N = decltype(width)::value;
      swiglu_backward_kernel<T, N><<<grid_for(n / N + 1, kThreads), kThreads, 0, as_stream(stream)>>>(
          static_cast<T*>(dgate), static_cast<T*>(dup), static_cast<const T*>(dh), static_cast<const T*>(gate),
          static_cast<const T*>(up), n);
    });
  });
  check_launch("swiglu_backward");
}

}  // namespace dsv3::cuda
