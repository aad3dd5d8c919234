// elementwise.cu kernels (fill, copy/cast, add, scale, ... in f32/bf16/fp8 storage), run in the emulator,
// against the CPU ops on inputs with rounding ties, subnormals and specials.
#include "harness.hpp"
#include "dsv3/ops/cuda/elementwise.hpp"
#include "dsv3/ops/elementwise.hpp"
#include "dsv3/core/error.hpp"
using namespace dsv3;

cuda::Float cf(DType d) { return d == DType::f32 ? cuda::Float::f32 : cuda::Float::bf16; }
cuda::Storage cs(DType d) { return d == DType::f32 ? cuda::Storage::f32 : d == DType::bf16 ? cuda::Storage::bf16 : cuda::Storage::fp8_e4m3; }
const char* dn(DType d) { return d == DType::f32 ? "f32" : d == DType::bf16 ? "bf16" : "fp8"; }

// Inputs that exercise rounding: random, ties of bf16 and of fp8 (normal and subnormal), saturation, specials.
std::vector<float> special_floats(std::size_t n) {
  std::vector<float> v = uniform(n, -3, 3);
  std::vector<float> s;
  for (int e = -12; e <= 9; ++e) for (int m = 0; m < 16; ++m) {
    s.push_back(std::ldexp(1.0f + m / 16.0f, e));       // fp8 ties (odd 4th bit) and exact values
    s.push_back(-std::ldexp(1.0f + m / 16.0f, e));
    s.push_back(std::ldexp(1.0f + m / 16.0f + 1.0f / 4096, e));  // just above a tie
  }
  for (float x : {448.0f, 449.0f, 464.0f, 465.0f, 480.0f, 500.0f, 1e6f, INFINITY, -INFINITY, NAN, -NAN, 0.0f, -0.0f,
                  std::ldexp(1.0f, -9), std::ldexp(1.0f, -10), std::ldexp(3.0f, -11), std::ldexp(1.0f, -11), 3.4e38f, -3.4e38f,
                  1e-40f, -1e-40f, std::ldexp(1.0f, -7) * 1.0625f})
    s.push_back(x);
  for (int i = 0; i < 200; ++i) {  // bf16 ties: low 16 bits 0x8000, both parities; and 0x7fff/0x8001
    std::uint32_t u = (g_rng() & 0xffff0000u) | 0x8000u; float f; std::memcpy(&f, &u, 4); if (std::isfinite(f)) s.push_back(f);
    u ^= 0x1; std::memcpy(&f, &u, 4); if (std::isfinite(f)) s.push_back(f);
    u = (g_rng() & 0xffff0000u) | 0x7fffu; std::memcpy(&f, &u, 4); if (std::isfinite(f)) s.push_back(f);
  }
  for (std::size_t i = 0; i < s.size() && i < n; ++i) v[(i * 7919) % n] = s[i];
  return v;
}

Tensor make_raw_float(std::int64_t n, DType dt, const std::vector<float>& v) {
  if (dt != DType::fp8_e4m3) return make({n}, dt, v);
  Tensor t = Tensor::empty({n}, dt);
  for (std::int64_t i = 0; i < n; ++i) static_cast<std::uint8_t*>(t.raw())[i] = static_cast<std::uint8_t>(g_rng());  // every code incl. NaN
  return t;
}

template <class F> void cpu_op(F f, std::initializer_list<Tensor*> outs, std::initializer_list<Tensor*> ins) {
  try { f(); return; } catch (const dsv3::Error&) {}
  // f32-only CPU op: widen bf16 in place, run, narrow back.
  std::vector<Tensor> orig_out; for (Tensor* t : outs) { orig_out.push_back(*t); *t = widen(*t); }
  std::vector<Tensor> orig_in; for (Tensor* t : ins) { orig_in.push_back(*t); *t = widen(*t); }
  f();
  int i = 0; for (Tensor* t : outs) { narrow_into(orig_out[i], *t); *t = orig_out[i++]; }
  i = 0; for (Tensor* t : ins) *t = orig_in[i++];
}

int main() {
  const std::int64_t sizes[] = {1, 7, 1000, 70001};
  for (std::int64_t n : sizes) {
    // convert between storage types: exact
    for (DType from : {DType::f32, DType::bf16, DType::fp8_e4m3}) for (DType to : {DType::f32, DType::bf16, DType::fp8_e4m3}) {
      Tensor src = make_raw_float(n, from, special_floats(n));
      Tensor ref = garbage({n}, to), got = garbage({n}, to);
      ops::convert(ref, src);
      cuda::convert_float(got.raw(), cs(to), src.raw(), cs(from), n, nullptr);
      check(W(std::string("convert ") + dn(from) + "->" + dn(to), DType::f32), "convert " + std::string(dn(from)) + "->" + dn(to) + " n" + std::to_string(n), got, ref, 0, true);
    }
    // index conversions
    for (DType from : {DType::i32, DType::i64}) for (DType to : {DType::i32, DType::i64}) {
      std::vector<float> v = uniform(n, -1e6, 1e6);
      Tensor src = make({n}, from, v), ref = garbage({n}, to), got = garbage({n}, to);
      ops::convert(ref, src);
      cuda::convert_index(got.raw(), to == DType::i32 ? cuda::Index::i32 : cuda::Index::i64, src.raw(), from == DType::i32 ? cuda::Index::i32 : cuda::Index::i64, n, nullptr);
      check(W("convert_index", DType::f32), "convert_index", got, ref, 0, true);
    }
    {  // i64 -> i32 overflow: both must throw, dst unchanged
      Tensor src = make({n}, DType::i64, uniform(n, -100, 100));
      static_cast<std::int64_t*>(src.raw())[n / 2] = (1ll << 31);
      if (n > 3) static_cast<std::int64_t*>(src.raw())[n - 1] = -(1ll << 31) - 1;
      Tensor got = garbage({n}, DType::i32);
      std::string msg;
      try { cuda::convert_index(got.raw(), cuda::Index::i32, src.raw(), cuda::Index::i64, n, nullptr); } catch (const dsv3::Error& e) { msg = e.what(); }
      const bool ok = msg.find("element " + std::to_string(n / 2) + " ") != std::string::npos;
      ++W("convert_index overflow detection", DType::f32).cases;
      if (!ok) { ++g_failures; std::printf("FAIL overflow detection n%lld: '%s'\n", (long long)n, msg.c_str()); }
    }
    for (DType dt : {DType::f32, DType::bf16}) {
      const std::string tag = std::string(dn(dt)) + " n" + std::to_string(n);
      {  // round_to_bf16 (f32 only)
        if (dt == DType::f32) {
          Tensor x = make({n}, DType::f32, special_floats(n)), ref = garbage({n}, DType::f32), got = garbage({n}, DType::f32);
          ops::round_to_bf16(ref, x);
          cuda::round_to_bf16(static_cast<float*>(got.raw()), static_cast<float*>(x.raw()), n, nullptr);
          check(W("round_to_bf16", dt), "round_to_bf16 " + tag, got, ref, 0, true);
        }
      }
      for (double value : {0.0, -1.5, 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40), 3.14159}) {
        Tensor ref = garbage({n}, dt), got = garbage({n}, dt);
        cpu_op([&] { ops::fill(ref, value); }, {&ref}, {});
        cuda::fill(got.raw(), cf(dt), value, n, nullptr);
        check(W("fill", dt), "fill " + tag + " value " + std::to_string(value), got, ref, 0, true);
      }
      {
        Tensor a = make({n}, dt, uniform(n, -2, 2)), b = make({n}, dt, uniform(n, -2, 2));
        Tensor ref = garbage({n}, dt), got = garbage({n}, dt);
        cpu_op([&] { ops::add(ref, a, b); }, {&ref}, {&a, &b});
        cuda::add(got.raw(), a.raw(), b.raw(), cf(dt), n, nullptr);
        check(W("add", dt), "add " + tag, got, ref, 0, dt == DType::f32);
        // aliasing y = a
        auto av = read(a); Tensor a2 = make({n}, dt, std::vector<float>(av.begin(), av.end()));
        cuda::add(a2.raw(), a2.raw(), b.raw(), cf(dt), n, nullptr);
        check(W("add (y aliases a)", dt), "add alias " + tag, a2, ref, 0, dt == DType::f32);
      }
      for (double alpha : {0.5, -3.0, 1e-3}) {
        Tensor x = make({n}, dt, uniform(n, -2, 2));
        auto y0 = uniform(n, -2, 2);
        Tensor ref = make({n}, dt, y0), got = make({n}, dt, y0);
        cpu_op([&] { ops::axpy(ref, alpha, x); }, {&ref}, {&x});
        cuda::axpy(got.raw(), alpha, x.raw(), cf(dt), n, nullptr);
        check(W("axpy", dt), "axpy " + tag, got, ref, dt == DType::f32 ? 1e-13 : 1e-5);
        Tensor sref = make({n}, dt, y0), sgot = make({n}, dt, y0);
        cpu_op([&] { ops::scale(sref, alpha); }, {&sref}, {});
        cuda::scale(sgot.raw(), alpha, cf(dt), n, nullptr);
        check(W("scale", dt), "scale " + tag, sgot, sref, dt == DType::f32 ? 1e-14 : 1e-6);
      }
    }
  }
  // copy_head_columns: copy, broadcast (src 1 head), sum (dst 1 head), 1->1.
  struct HC { int T, dh, sh, drow, srow, dcol, scol, width; };
  const HC hcs[] = {{5, 3, 3, 10, 7, 2, 1, 5}, {37, 16, 1, 192, 64, 128, 0, 64}, {37, 1, 16, 64, 192, 0, 128, 64},
                    {1, 1, 1, 9, 9, 0, 0, 9}, {129, 4, 4, 13, 11, 0, 3, 0}, {129, 128, 1, 192, 64, 128, 0, 64},
                    {3, 1, 128, 64, 192, 0, 128, 64}, {9, 2, 1, 5, 3, 4, 2, 1}};
  for (DType dt : {DType::f32, DType::bf16}) for (const HC& h : hcs) {
    Tensor src = make({h.T, h.sh, h.srow}, dt, uniform(std::size_t(h.T) * h.sh * h.srow, -2, 2));
    auto d0 = uniform(std::size_t(h.T) * h.dh * h.drow, -2, 2);
    Tensor ref = make({h.T, h.dh, h.drow}, dt, d0), got = make({h.T, h.dh, h.drow}, dt, d0);
    cpu_op([&] { ops::copy_head_columns(ref, h.dcol, src, h.scol, h.width); }, {&ref}, {&src});
    cuda::HeadColumns c; c.tokens = h.T; c.dst_heads = h.dh; c.src_heads = h.sh; c.dst_row = h.drow; c.src_row = h.srow;
    c.dst_column = h.dcol; c.src_column = h.scol; c.width = h.width;
    cuda::copy_head_columns(got.raw(), src.raw(), cf(dt), c, nullptr);
    char name[100]; std::snprintf(name, sizeof name, "copy_head_columns %s T%d dh%d sh%d", dn(dt), h.T, h.dh, h.sh);
    const bool sum = h.dh == 1 && h.sh > 1;
    check(W(sum ? "copy_head_columns (sum)" : "copy_head_columns (copy/broadcast)", dt), name, got, ref, sum ? 1e-12 : 0, !sum);
  }
  summary_all();
  return g_failures != 0;
}
