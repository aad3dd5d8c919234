// Host stand-in for <cuda_fp8.h>: e4m3 conversions written from the OCP FP8 spec: round to nearest even, __NV_SATFINITE clamps to ±448
// (infinities too), NaN -> 0x7F.
#pragma once
#include <cmath>
#include <cstdint>
typedef unsigned char __nv_fp8_storage_t;
enum __nv_saturation_t { __NV_NOSAT, __NV_SATFINITE };
enum __nv_fp8_interpretation_t { __NV_E4M3, __NV_E5M2 };
struct __half_raw { unsigned short x; };
struct __half { unsigned short __x; __half() = default; __half(__half_raw r) : __x(r.x) {} };
inline float __half2float(__half h) {
  const int s = h.__x >> 15, e = (h.__x >> 10) & 31, m = h.__x & 1023;
  double v = e == 0 ? std::ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : std::ldexp(1024 + m, e - 25);
  return float(s ? -v : v);
}
inline double emu_e4m3_value(unsigned char b) {
  const int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
  if (e == 15 && m == 7) return NAN;
  const double v = e == 0 ? std::ldexp(m, -9) : std::ldexp(8 + m, e - 10);
  return s ? -v : v;
}
inline __nv_fp8_storage_t __nv_cvt_float_to_fp8(float x, __nv_saturation_t sat, __nv_fp8_interpretation_t) {
  if (std::isnan(x)) return 0x7F;
  const unsigned char sign = std::signbit(x) ? 0x80 : 0;
  double a = std::fabs(double(x));
  if (a > 448.0) {
    if (sat == __NV_SATFINITE) return sign | 0x7E;
    return sign | 0x7F;
  }
  if (a == 0) return sign;
  int e = std::ilogb(a);
  if (e < -6) e = -6;
  const double quantum = std::ldexp(1.0, e - 3);
  const double q = std::nearbyint(a / quantum) * quantum;  // RNE (default rounding mode)
  if (q == 0) return sign;
  if (q > 448.0) return sign | 0x7E;  // cannot happen for a <= 448
  int E = std::ilogb(q);
  if (E < -6) return sign | static_cast<unsigned char>(q / std::ldexp(1.0, -9));  // subnormal
  const int M = static_cast<int>(q / std::ldexp(1.0, E) * 8) - 8;
  return sign | static_cast<unsigned char>((E + 7) << 3 | M);
}
inline __half_raw __nv_cvt_fp8_to_halfraw(__nv_fp8_storage_t b, __nv_fp8_interpretation_t) {
  const double v = emu_e4m3_value(b);
  __half_raw r;
  if (std::isnan(v)) { r.x = 0x7E00; return r; }
  unsigned short s = std::signbit(v) ? 0x8000 : 0;
  const double a = std::fabs(v);
  if (a == 0) { r.x = s; return r; }
  const int e = std::ilogb(a);  // -9..8: normal in half
  const int m = static_cast<int>((a / std::ldexp(1.0, e) - 1) * 1024);
  r.x = s | static_cast<unsigned short>((e + 15) << 10 | m);
  return r;
}
struct __nv_fp8_e4m3 {
  __nv_fp8_storage_t __x;
  explicit operator float() const { return float(emu_e4m3_value(__x)); }
};
