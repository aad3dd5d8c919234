// exp in a form GCC vectorises, for the CPU kernels' inner loops (softmax, sigmoid, cross-entropy).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

namespace dsv3::ops::cpu {

// e^x for float, within about 1 ulp: Cephes' expf polynomial, written so that GCC vectorises it, which it does
// not for std::exp without -ffast-math. Inputs below −87 give 0 (so −inf gives 0, and no denormal appears);
// inputs above 88 are clamped to 88, so callers pass arguments ≤ 0 (x − max, −|x|).
inline float vector_exp(float x) {
  const float clamped = std::clamp(x, -87.0f, 88.0f);
  // x = n·ln2 + r with integer n and |r| ≤ ln2/2; adding and subtracting 1.5·2²³ rounds to the nearest integer.
  constexpr float kRound = 12582912.0f;
  const float n = (clamped * 1.44269504088896341f + kRound) - kRound;
  const float r = std::fma(n, 2.12194440e-4f, std::fma(n, -0.693359375f, clamped));  // ln2 in two parts
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  const float exp_r = std::fma(p, r * r, r + 1.0f);
  const float two_to_n = std::bit_cast<float>((static_cast<std::int32_t>(n) + 127) << 23);
  return x < -87.0f ? 0.0f : exp_r * two_to_n;
}

// double (the gradient-check type): std::exp, accuracy before speed.
inline double vector_exp(double x) { return std::exp(x); }

// 1 / (1 + e^−x), with exp only ever taken of −|x|, so no intermediate overflows for large |x|.
template <class T>
T sigmoid(T x) {
  const T e = vector_exp(-std::abs(x));
  return (x >= T{0} ? T{1} : e) / (T{1} + e);
}

}  // namespace dsv3::ops::cpu
