// Host emulation of the attention kernels: the real kernel bodies (extracted by gen.py), with ldmatrix/mma/shuffles
// emulated per the PTX fragment tables and 128 OS threads per CTA (emu.hpp), against a double-precision naive
// reference (forward output, LSE and the backward gradients, causal with and without document masks).
// Usage: attention_emu [matrix|long|N]: the test_backend_attention.cpp shape matrix, two 300-token cases, or
// the first N of the default cases. The host wrappers in the .cu files are not exercised (main.cpp launches).
#include "emu.hpp"
#include "dsv3/ops/cuda/common.cuh"
namespace dsv3::cuda::attention_kernels { namespace { alignas(16) uint4 shared_memory[262144 / 16]; } }
#include "attention_forward_kernels.inc"
#include "attention_backward_kernels.inc"
#include <random>
#include <string>

using namespace dsv3::cuda;
using namespace dsv3::cuda::attention_kernels;

template <class Kernel, class... Args>
void launch(dim3 grid, std::size_t shared_bytes, Kernel kernel, Args... args) {
  if (shared_bytes > sizeof(shared_memory)) { std::fprintf(stderr, "too much shared memory\n"); std::abort(); }
  blockDim = dim3(kThreads); gridDim = grid;
  for (unsigned z = 0; z < grid.z; ++z) for (unsigned y = 0; y < grid.y; ++y) for (unsigned x = 0; x < grid.x; ++x) {
    BlockContext context; g_block = &context;
    std::memset(shared_memory, 0xff, sizeof(shared_memory));  // NaN bf16 everywhere: unwritten tiles show
    g_shared_begin = reinterpret_cast<unsigned char*>(shared_memory); g_shared_bytes = shared_bytes;
    std::vector<std::thread> threads;
    for (unsigned tid = 0; tid < kThreads; ++tid) threads.emplace_back([&, tid] { threadIdx = dim3(tid); blockIdx = dim3(x, y, z); kernel(args...); });
    for (auto& th : threads) th.join();
  }
}
template <class Kernel, class... Args>
void launch_delta(dim3 grid, unsigned threads_per_block, Kernel kernel, Args... args) {
  // delta_kernel uses only warp shuffles: emulate with blocks of threads_per_block (multiple of 32), 4 warps at a time.
  blockDim = dim3(threads_per_block); gridDim = grid;
  for (unsigned x = 0; x < grid.x; ++x) for (unsigned w0 = 0; w0 < threads_per_block; w0 += 128) {
    BlockContext context; g_block = &context;
    std::vector<std::thread> threads;
    for (unsigned tid = 0; tid < 128; ++tid) threads.emplace_back([&, tid] { threadIdx = dim3(w0 + tid); blockIdx = dim3(x); kernel(args...); });
    for (auto& th : threads) th.join();
  }
}

struct Case { int B, S, H, Dqk, Dv; bool docs; bool bf16; bool one_document = false; };

float bf16_round(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

template <class T> std::vector<T> store(const std::vector<float>& x) {
  std::vector<T> y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    if constexpr (std::is_same_v<T, float>) y[i] = x[i]; else y[i] = __float2bfloat16_rn(x[i]);
  }
  return y;
}
template <class T> std::vector<double> load(const std::vector<T>& x) {
  std::vector<double> y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = to_float(x[i]);
  return y;
}
double nmse(const std::vector<double>& a, const std::vector<double>& e, int& bad) {
  double err = 0, norm = 0; bad = 0;
  for (std::size_t i = 0; i < e.size(); ++i) { if (!std::isfinite(a[i])) { ++bad; continue; } err += (a[i] - e[i]) * (a[i] - e[i]); norm += e[i] * e[i]; }
  return norm > 0 ? err / norm : err;
}

template <class T>
bool run(const Case& c, std::mt19937& rng) {
  const int B = c.B, S = c.S, H = c.H, Dqk = c.Dqk, Dv = c.Dv;
  std::uniform_real_distribution<float> u2(-2, 2), u1(-1, 1);
  auto gen = [&](std::size_t n, auto& d) { std::vector<float> x(n); for (auto& v : x) v = bf16_round(d(rng)); return x; };
  const std::size_t nqk = std::size_t(B) * S * H * Dqk, nv = std::size_t(B) * S * H * Dv;
  auto q = gen(nqk, u2), k = gen(nqk, u2), v = gen(nv, u1), dout = gen(nv, u1);
  std::vector<std::int32_t> docs(std::size_t(B) * S);
  const int lengths[] = {1, 2, 1, 13, 1, 37, 64, 1, 90, 5};
  for (int b = 0; b < B; ++b) { int pos = 0; for (int d = 0; d < 10; ++d) { int len = b % 2 ? lengths[9 - d] : lengths[d]; for (int i = 0; i < len && pos < S; ++i) docs[b * S + pos++] = d; } while (pos < S) docs[b * S + pos++] = 10; }
  if (c.one_document) for (auto& d : docs) d = 7;
  if (c.one_document) for (int i = S / 2; i < S; ++i) docs[i] = 8;  // batch row 0: two long documents
  const double scale = 1.0 / std::sqrt(double(Dqk));

  // Reference in double.
  std::vector<double> out_ref(nv), lse_ref(std::size_t(B) * H * S), dq_ref(nqk, 0), dk_ref(nqk, 0), dv_ref(nv, 0);
  auto qi = [&](int b, int s, int h, int d) { return ((std::size_t(b) * S + s) * H + h) * Dqk + d; };
  auto vi = [&](int b, int s, int h, int d) { return ((std::size_t(b) * S + s) * H + h) * Dv + d; };
  auto vis = [&](int b, int i, int j) { return j <= i && (!c.docs || docs[b * S + i] == docs[b * S + j]); };
  for (int b = 0; b < B; ++b) for (int h = 0; h < H; ++h) {
    std::vector<double> P(std::size_t(S) * S, 0.0), dP(std::size_t(S) * S, 0.0);
    for (int i = 0; i < S; ++i) {
      double m = -INFINITY; std::vector<double> s(S, -INFINITY);
      for (int j = 0; j < S; ++j) if (vis(b, i, j)) { double x = 0; for (int d = 0; d < Dqk; ++d) x += double(q[qi(b, i, h, d)]) * k[qi(b, j, h, d)]; s[j] = x * scale; m = std::max(m, s[j]); }
      double l = 0; for (int j = 0; j < S; ++j) if (vis(b, i, j)) l += std::exp(s[j] - m);
      lse_ref[(std::size_t(b) * H + h) * S + i] = m + std::log(l);
      for (int j = 0; j < S; ++j) P[std::size_t(i) * S + j] = vis(b, i, j) ? std::exp(s[j] - m) / l : 0.0;
      for (int d = 0; d < Dv; ++d) { double o = 0; for (int j = 0; j < S; ++j) o += P[std::size_t(i) * S + j] * v[vi(b, j, h, d)]; out_ref[vi(b, i, h, d)] = o; }
    }
    for (int i = 0; i < S; ++i) {
      double D = 0; for (int d = 0; d < Dv; ++d) D += double(dout[vi(b, i, h, d)]) * out_ref[vi(b, i, h, d)];
      for (int j = 0; j < S; ++j) {
        const double p = P[std::size_t(i) * S + j]; if (p == 0) continue;
        double dp = 0; for (int d = 0; d < Dv; ++d) dp += double(dout[vi(b, i, h, d)]) * v[vi(b, j, h, d)];
        const double ds = p * (dp - D);
        for (int d = 0; d < Dv; ++d) dv_ref[vi(b, j, h, d)] += p * dout[vi(b, i, h, d)];
        for (int d = 0; d < Dqk; ++d) { dq_ref[qi(b, i, h, d)] += scale * ds * k[qi(b, j, h, d)]; dk_ref[qi(b, j, h, d)] += scale * ds * q[qi(b, i, h, d)]; }
      }
    }
  }

  // Kernels, launched as attention_forward / attention_backward do.
  AttentionShape shape; shape.batch = B; shape.seq = S; shape.heads = H; shape.qk_dim = Dqk; shape.v_dim = Dv; shape.scale = scale;
  shape.document_ids = c.docs ? docs.data() : nullptr;
  auto tq = store<T>(q), tk = store<T>(k), tv = store<T>(v), tdout = store<T>(dout);
  const T nan_value = [] { if constexpr (std::is_same_v<T, float>) return NAN; else return __nv_bfloat16{0x7fc0}; }();
  std::vector<T> tout(nv, nan_value), tdq(nqk, nan_value), tdk(nqk, nan_value), tdv(nv, nan_value);
  std::vector<float> lse(std::size_t(B) * H * S, NAN);
  check_shape(shape, "emu");
  const Problem problem = make_problem(shape, vectorizable(tq.data(), Dqk) && vectorizable(tk.data(), Dqk), vectorizable(tv.data(), Dv) && vectorizable(tdout.data(), Dv));
  const dim3 grid((S + kTile - 1) / kTile, H, B);
  with_head_dims(problem.qk_padded, problem.v_padded, [&](auto dims) {
    using Dims = decltype(dims);
    launch(grid, sizeof(bfloat16) * kTile * (2 * problem.qk_row() + problem.v_row()), forward_kernel<T, Dims::v>, tout.data(), lse.data(), (const T*)tq.data(), (const T*)tk.data(), (const T*)tv.data(), problem);
    std::vector<float> delta(std::size_t(B) * H * S, NAN);
    const std::int64_t rows = std::int64_t(B) * S * H;
    launch_delta(dim3(grid_for(rows * 32, 256)), 256, delta_kernel<T>, delta.data(), (const T*)tdout.data(), (const T*)tout.data(), S, H, Dv, rows);
    const std::size_t key_bytes = sizeof(bfloat16) * (kTile + kStep) * (problem.qk_row() + problem.v_row()) + sizeof(float) * 2 * kStep;
    const std::size_t query_bytes = sizeof(bfloat16) * kTile * 2 * (problem.qk_row() + problem.v_row());
    launch(grid, key_bytes, key_gradients_kernel<T, Dims::qk, Dims::v>, tdk.data(), tdv.data(), (const T*)tq.data(), (const T*)tk.data(), (const T*)tv.data(), (const T*)tdout.data(), (const float*)lse.data(), (const float*)delta.data(), problem);
    launch(grid, query_bytes, query_gradients_kernel<T, Dims::qk>, tdq.data(), (const T*)tq.data(), (const T*)tk.data(), (const T*)tv.data(), (const T*)tdout.data(), (const float*)lse.data(), (const float*)delta.data(), problem);
  });
  const double threshold = c.bf16 ? 1e-4 : 1e-5;
  bool ok = true;
  auto report = [&](const char* name, const std::vector<double>& a, const std::vector<double>& e, double th) {
    int bad; const double n = nmse(a, e, bad); const bool pass = bad == 0 && n <= th; ok = ok && pass;
    std::printf("  %-4s nmse %.3e nonfinite %d %s\n", name, n, bad, pass ? "" : "FAIL");
  };
  std::printf("%s B %d S %d H %d Dqk %d Dv %d %s\n", c.bf16 ? "bf16" : "f32", B, S, H, Dqk, Dv, c.docs ? "documents" : "causal");
  report("out", load(tout), out_ref, threshold);
  std::vector<double> lse_d(lse.begin(), lse.end());
  report("lse", lse_d, lse_ref, 1e-5);
  report("dq", load(tdq), dq_ref, threshold);
  report("dk", load(tdk), dk_ref, threshold);
  report("dv", load(tdv), dv_ref, threshold);
  return ok;
}

int main(int argc, char** argv) {
  std::mt19937 rng(5);
  std::vector<Case> cases = {
      {1, 1, 1, 7, 5, false, false}, {2, 17, 3, 48, 32, true, false}, {1, 130, 1, 24, 16, true, false},
      {1, 130, 3, 7, 5, false, true}, {2, 70, 1, 48, 32, false, true}, {1, 257, 1, 24, 16, true, true},
      {1, 130, 1, 192, 128, true, false}, {1, 80, 1, 192, 128, false, true}, {1, 66, 2, 200, 136, true, false},
  };
  if (argc > 1 && std::string(argv[1]) == "long") {
    cases = {{2, 300, 2, 48, 32, true, true, true}, {2, 300, 1, 24, 16, true, false, true}};
  } else if (argc > 1 && std::string(argv[1]) == "matrix") {  // the matrix of test_backend_attention.cpp
    cases.clear();
    int index = 0;
    const int seqs[] = {1, 17, 64, 130, 257};
    const int dims[][2] = {{192, 128}, {48, 32}, {24, 16}, {7, 5}};
    for (bool bf16 : {false, true}) for (bool docs : {false, true}) for (int seq : seqs) for (auto& d : dims) {
      cases.push_back({1 + index % 2, seq, index / 2 % 2 == 0 ? 1 : 3, d[0], d[1], docs, bf16});
      ++index;
    }
  } else if (argc > 1) cases.resize(std::atoi(argv[1]));
  bool ok = true;
  for (const Case& c : cases) ok = (c.bf16 ? run<__nv_bfloat16>(c, rng) : run<float>(c, rng)) && ok;
  std::printf(ok ? "ALL PASS\n" : "SOME FAILED\n");
  return ok ? 0 : 1;
}
