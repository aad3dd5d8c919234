// Shared helpers of the kernel emulation tests: tensors filled with garbage/rounding-edge inputs, per-op worst
// error tables (nmse, bit mismatches) and the failure counter each test's exit status comes from.
#pragma once
#include "dsv3/core/dtype.hpp"
#include "dsv3/tensor/tensor.hpp"
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>
using dsv3::DType;
using dsv3::Tensor;
inline int g_failures = 0;
inline std::mt19937 g_rng(1234);
inline float bf16r(float x) { return dsv3::bf16_to_f32(dsv3::f32_to_bf16(x)); }
inline Tensor make(dsv3::Shape shape, DType dtype, const std::vector<float>& v) {
  Tensor t = Tensor::empty(shape, dtype);
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    if (dtype == DType::f32) static_cast<float*>(t.raw())[i] = v[i];
    else if (dtype == DType::bf16) static_cast<dsv3::bf16*>(t.raw())[i] = dsv3::f32_to_bf16(v[i]);
    else if (dtype == DType::i32) static_cast<std::int32_t*>(t.raw())[i] = static_cast<std::int32_t>(v[i]);
    else if (dtype == DType::i64) static_cast<std::int64_t*>(t.raw())[i] = static_cast<std::int64_t>(v[i]);
    else std::abort();
  }
  return t;
}
inline Tensor garbage(dsv3::Shape shape, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype);
  std::memset(t.raw(), 0x7f, t.nbytes());
  return t;
}
inline std::vector<double> read(const Tensor& t) {
  std::vector<double> r(t.numel());
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    switch (t.dtype()) {
      case DType::f32: r[i] = static_cast<float*>(t.raw())[i]; break;
      case DType::bf16: r[i] = dsv3::bf16_to_f32(static_cast<dsv3::bf16*>(t.raw())[i]); break;
      case DType::f64: r[i] = static_cast<double*>(t.raw())[i]; break;
      case DType::i32: r[i] = static_cast<std::int32_t*>(t.raw())[i]; break;
      case DType::i64: r[i] = static_cast<double>(static_cast<std::int64_t*>(t.raw())[i]); break;
      case DType::fp8_e4m3: r[i] = dsv3::fp8_e4m3_to_f32(static_cast<dsv3::fp8_e4m3*>(t.raw())[i]); break;
    }
  }
  return r;
}
inline std::vector<float> uniform(std::size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g_rng);
  return v;
}
struct Compare { double nmse = 0; std::int64_t mismatched_bits = 0, nonfinite_diff = 0, n = 0; };
// NMSE of a vs e, and how many elements differ in their bytes.
inline Compare compare(const Tensor& a, const Tensor& e) {
  Compare c; c.n = a.numel();
  auto x = read(a), y = read(e);
  double err = 0, norm = 0;
  const std::size_t es = a.nbytes() / std::max<std::int64_t>(1, a.numel());
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (std::memcmp(static_cast<char*>(a.raw()) + i * es, static_cast<char*>(e.raw()) + i * es, es) != 0 && !(std::isnan(x[i]) && std::isnan(y[i]))) ++c.mismatched_bits;
    if (std::isfinite(x[i]) != std::isfinite(y[i]) || (std::isnan(x[i]) != std::isnan(y[i]))) { ++c.nonfinite_diff; continue; }
    if (!std::isfinite(y[i])) continue;
    err += (x[i] - y[i]) * (x[i] - y[i]); norm += y[i] * y[i];
  }
  c.nmse = norm > 0 ? err / norm : err;
  return c;
}
struct Worst { double nmse = 0; std::int64_t mismatched = 0, cases = 0, elements = 0; };
#include <map>
inline std::map<std::string, Worst> g_worst;
inline Worst& W(const std::string& op, DType dt) { return g_worst[op + (dt == DType::f32 ? " f32" : dt == DType::bf16 ? " bf16" : " other")]; }
inline void summary_all() {
  for (auto& [name, w] : g_worst) std::printf("%-44s cases %4lld worst nmse %.3e bit-mismatched elements %lld/%lld\n", name.c_str(), (long long)w.cases, w.nmse, (long long)w.mismatched, (long long)w.elements);
  std::printf(g_failures ? "FAILURES %d\n" : "ALL PASS\n", g_failures);
}
inline void check(Worst& w, const std::string& what, const Tensor& a, const Tensor& e, double tol, bool exact = false) {
  Compare c = compare(a, e);
  ++w.cases; w.elements += c.n; w.nmse = std::max(w.nmse, c.nmse); w.mismatched += c.mismatched_bits;
  const bool ok = c.nonfinite_diff == 0 && c.nmse <= tol && (!exact || c.mismatched_bits == 0);
  if (!ok && exact) {
    const std::size_t es = a.nbytes() / std::max<std::int64_t>(1, a.numel()); int shown = 0;
    for (std::int64_t i = 0; i < a.numel() && shown < 6; ++i) {
      unsigned long long x = 0, y = 0; std::memcpy(&x, static_cast<char*>(a.raw()) + i * es, es); std::memcpy(&y, static_cast<char*>(e.raw()) + i * es, es);
      if (x != y && !(std::isnan(read(a)[i]) && std::isnan(read(e)[i]))) { ++shown; std::printf("    [%lld] emu %#llx (%g) ref %#llx (%g)\n", (long long)i, x, read(a)[i], y, read(e)[i]); }
    }
  }
  if (!ok) { ++g_failures; std::printf("FAIL %s: nmse %.3e mismatched %lld/%lld nonfinite-diff %lld\n", what.c_str(), c.nmse, (long long)c.mismatched_bits, (long long)c.n, (long long)c.nonfinite_diff); }
}
inline void summary(const char* name, const Worst& w) {
  std::printf("%-28s cases %4lld worst nmse %.3e mismatched elements (bits) %lld\n", name, (long long)w.cases, w.nmse, (long long)w.mismatched);
}
// bf16 tensors for the f32-only CPU ops: widen the inputs, run in f32, round the result.
inline Tensor widen(const Tensor& t) {
  if (!t.defined() || t.dtype() != DType::bf16) return t;
  auto v = read(t); std::vector<float> f(v.begin(), v.end());
  return make(t.shape(), DType::f32, f);
}
inline void narrow_into(const Tensor& dst, const Tensor& f32) {
  if (dst.dtype() == DType::f32) { std::memcpy(dst.raw(), f32.raw(), f32.nbytes()); return; }
  auto v = read(f32);
  for (std::int64_t i = 0; i < dst.numel(); ++i) static_cast<dsv3::bf16*>(dst.raw())[i] = dsv3::f32_to_bf16(float(v[i]));
}
inline Tensor out_like(const Tensor& t) { return t.dtype() == DType::bf16 ? garbage(t.shape(), DType::f32) : t; }
