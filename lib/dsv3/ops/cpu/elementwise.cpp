#include "dsv3/ops/cpu/elementwise.hpp"

#include "dsv3/ops/cpu/dispatch.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <utility>

namespace dsv3::ops::cpu {

namespace {

// Below this many elements a loop runs on one thread: waking the team costs more than the work.
constexpr std::int64_t kParallelThreshold = 1 << 15;

// body(i) for i in [0, n), across the OpenMP threads when n is large enough.
template <class Body>
void parallel_for(std::int64_t n, Body&& body) {
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (std::int64_t i = 0; i < n; ++i) body(i);
}

// f64 → f32 with round-to-odd: round toward zero, then set the last mantissa bit if anything was dropped.
// Rounding that result again to nearest even in a format at least two bits narrower (bf16 keeps 8 of f32's 24
// bits, fp8 e4m3 4) gives the same value as rounding the f64 directly (Boldo & Melquiond, "When double rounding
// is odd", 2005). A plain f64 → f32 → bf16 chain would round twice and can land on the wrong side of a tie.
float narrow_round_to_odd(double x) {
  float narrowed = static_cast<float>(x);  // nearest even, may overflow to ±inf
  if (static_cast<double>(narrowed) == x || std::isnan(x)) return narrowed;
  if (std::fabs(static_cast<double>(narrowed)) > std::fabs(x)) narrowed = std::nextafter(narrowed, 0.0f);
  return std::bit_cast<float>(std::bit_cast<std::uint32_t>(narrowed) | 1u);
}

// Every float storage dtype reads exactly as f64; writing from f64 rounds once, to nearest even.
double to_double(float x) { return x; }
double to_double(double x) { return x; }
double to_double(bf16 x) { return bf16_to_f32(x); }
double to_double(fp8_e4m3 x) { return fp8_e4m3_to_f32(x); }

template <class T>
T from_double(double x);
template <>
float from_double<float>(double x) { return static_cast<float>(x); }
template <>
double from_double<double>(double x) { return x; }
template <>
bf16 from_double<bf16>(double x) { return f32_to_bf16(narrow_round_to_odd(x)); }
template <>
fp8_e4m3 from_double<fp8_e4m3>(double x) { return f32_to_fp8_e4m3(narrow_round_to_odd(x)); }

// with_float_type for the storage dtypes: f32, f64, bf16 and fp8 e4m3.
template <class Function>
void with_storage_type(DType dtype, Function&& function) {
  switch (dtype) {
    case DType::f32: function.template operator()<float>(); return;
    case DType::f64: function.template operator()<double>(); return;
    case DType::bf16: function.template operator()<bf16>(); return;
    case DType::fp8_e4m3: function.template operator()<fp8_e4m3>(); return;
    default: fail("convert: {} is not a float dtype", dtype_name(dtype));
  }
}

void convert_floats(const Tensor& dst, const Tensor& src) {
  with_storage_type(src.dtype(), [&]<class Source>() {
    with_storage_type(dst.dtype(), [&]<class Destination>() {
      const Source* from = src.data<Source>();
      Destination* to = dst.data<Destination>();
      parallel_for(src.numel(), [&](std::int64_t i) { to[i] = from_double<Destination>(to_double(from[i])); });
    });
  });
}

void convert_indices(const Tensor& dst, const Tensor& src) {
  with_index_type(src.dtype(), "convert", [&]<class Source>() {
    with_index_type(dst.dtype(), "convert", [&]<class Destination>() {
      const Source* from = src.data<Source>();
      Destination* to = dst.data<Destination>();
      // Check everything before writing anything, so a failed convert leaves dst as it was.
      for (std::int64_t i = 0; i < src.numel(); ++i) {
        DSV3_CHECK(std::in_range<Destination>(from[i]), "convert: element {} of {} is {}, outside the range of {}",
                   i, src.describe(), from[i], dtype_name(dst.dtype()));
      }
      parallel_for(src.numel(), [&](std::int64_t i) { to[i] = static_cast<Destination>(from[i]); });
    });
  });
}

}  // namespace

void convert(const Tensor& dst, const Tensor& src) {
  if (dst.dtype() == src.dtype()) {
    std::memmove(dst.raw(), src.raw(), src.nbytes());  // a copy, bit for bit (NaN payloads included)
  } else if (is_floating(src.dtype())) {
    convert_floats(dst, src);
  } else {
    convert_indices(dst, src);
  }
}

void round_to_bf16(const Tensor& y, const Tensor& x) {
  const float* in = x.data<float>();
  float* out = y.data<float>();
  parallel_for(x.numel(), [&](std::int64_t i) { out[i] = bf16_to_f32(f32_to_bf16(in[i])); });
}

void fill(const Tensor& y, double value) {
  with_float_type(y.dtype(), "fill", [&]<class T>() {
    T* out = y.data<T>();
    parallel_for(y.numel(), [&](std::int64_t i) { out[i] = static_cast<T>(value); });
  });
}

void add(const Tensor& y, const Tensor& a, const Tensor& b) {
  with_float_type(y.dtype(), "add", [&]<class T>() {
    const T* lhs = a.data<T>();
    const T* rhs = b.data<T>();
    T* out = y.data<T>();
    parallel_for(y.numel(), [&](std::int64_t i) { out[i] = lhs[i] + rhs[i]; });
  });
}

void axpy(const Tensor& y, double alpha, const Tensor& x) {
  with_float_type(y.dtype(), "axpy", [&]<class T>() {
    const T factor = static_cast<T>(alpha);  // computed in the tensor's precision, as BLAS saxpy/daxpy
    const T* in = x.data<T>();
    T* out = y.data<T>();
    parallel_for(y.numel(), [&](std::int64_t i) { out[i] += factor * in[i]; });
  });
}

void scale(const Tensor& y, double alpha) {
  with_float_type(y.dtype(), "scale", [&]<class T>() {
    const T factor = static_cast<T>(alpha);
    T* out = y.data<T>();
    parallel_for(y.numel(), [&](std::int64_t i) { out[i] *= factor; });
  });
}

void copy_head_columns(const Tensor& dst, std::int64_t dst_column, const Tensor& src, std::int64_t src_column,
                       std::int64_t width) {
  const std::int64_t tokens = dst.size(0);
  const std::int64_t dst_heads = dst.size(1), src_heads = src.size(1);
  const std::int64_t dst_row = dst.size(2), src_row = src.size(2);
  const std::int64_t heads = std::max(dst_heads, src_heads);
  const bool sum_over_heads = dst_heads == 1 && src_heads > 1;
  with_float_type(dst.dtype(), "copy_head_columns", [&]<class T>() {
    const T* from = src.data<T>();  // [T, src_heads, src_row]
    T* to = dst.data<T>();          // [T, dst_heads, dst_row]
#pragma omp parallel for
    for (std::int64_t t = 0; t < tokens; ++t) {
      for (std::int64_t h = 0; h < heads; ++h) {
        const T* in = from + (t * src_heads + std::min(h, src_heads - 1)) * src_row + src_column;
        T* out = to + (t * dst_heads + std::min(h, dst_heads - 1)) * dst_row + dst_column;
        if (sum_over_heads && h > 0) {
#pragma omp simd
          for (std::int64_t i = 0; i < width; ++i) out[i] += in[i];
        } else {
          std::copy_n(in, width, out);
        }
      }
    }
  });
}

}  // namespace dsv3::ops::cpu
