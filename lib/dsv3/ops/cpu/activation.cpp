#include "dsv3/ops/cpu/activation.hpp"

#include "dsv3/ops/cpu/dispatch.hpp"
#include "dsv3/ops/cpu/vector_math.hpp"

#include <cstdint>

namespace dsv3::ops::cpu {

void swiglu_forward(const Tensor& h, const Tensor& gate, const Tensor& up) {
  const std::int64_t n = gate.numel();
  with_float_type(gate.dtype(), "swiglu_forward", [&]<class T>() {
    const T* g = gate.data<T>();
    const T* u = up.data<T>();
    T* out = h.data<T>();
#pragma omp parallel for simd schedule(static)
    for (std::int64_t i = 0; i < n; ++i) out[i] = g[i] * sigmoid(g[i]) * u[i];
  });
}

void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dh, const Tensor& gate, const Tensor& up) {
  const std::int64_t n = gate.numel();
  with_float_type(gate.dtype(), "swiglu_backward", [&]<class T>() {
    const T* g = gate.data<T>();
    const T* u = up.data<T>();
    const T* dout = dh.data<T>();
    T* dg = dgate.data<T>();
    T* du = dup.data<T>();
#pragma omp parallel for simd schedule(static)
    for (std::int64_t i = 0; i < n; ++i) {
      const T gi = g[i], ui = u[i], di = dout[i];  // all read before either write: outputs may alias inputs
      const T s = sigmoid(gi);
      // silu'(g) = s + g·s·(1 − s) = s·(1 + g·(1 − s))
      dg[i] = di * ui * s * (T{1} + gi * (T{1} - s));
      du[i] = di * gi * s;
    }
  });
}

}  // namespace dsv3::ops::cpu
