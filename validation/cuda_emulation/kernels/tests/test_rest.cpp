// norm, loss, optim, rope, activation, fp8 and embedding kernels, run in the emulator, against the CPU ops.
// Usage: test_rest [norm|loss|optim|rope|activation|fp8|embedding] (default: all).
#include "harness.hpp"
#include "dsv3/core/error.hpp"
#include "dsv3/ops/activation.hpp"
#include "dsv3/ops/cuda/activation.hpp"
#include "dsv3/ops/cuda/embedding.hpp"
#include "dsv3/ops/cuda/fp8.hpp"
#include "dsv3/ops/cuda/loss.hpp"
#include "dsv3/ops/cuda/norm.hpp"
#include "dsv3/ops/cuda/optim.hpp"
#include "dsv3/ops/cuda/rope.hpp"
#include "dsv3/ops/embedding.hpp"
#include "dsv3/ops/fp8.hpp"
#include "dsv3/ops/loss.hpp"
#include "dsv3/ops/norm.hpp"
#include "dsv3/ops/optim.hpp"
#include "dsv3/ops/rope.hpp"
using namespace dsv3;

cuda::Float cf(DType d) { return d == DType::f32 ? cuda::Float::f32 : cuda::Float::bf16; }
const char* dn(DType d) { return d == DType::f32 ? "f32" : "bf16"; }
double tol(DType d, double f32, double bf16) { return d == DType::f32 ? f32 : bf16; }

// A "device" copy of a tensor, 16-byte aligned or deliberately misaligned by one element (forces the scalar path).
struct Dev {
  std::vector<unsigned char> buf; unsigned char* p; std::size_t bytes;
  Dev(const Tensor& t, bool misalign) : buf(t.nbytes() + 64), bytes(t.nbytes()) {
    auto base = (reinterpret_cast<std::uintptr_t>(buf.data()) + 15) / 16 * 16;
    p = reinterpret_cast<unsigned char*>(base) + (misalign ? dtype_size(t.dtype()) : 0);
    std::memcpy(p, t.raw(), bytes);
  }
  void* get() { return p; }
  Tensor back(const Tensor& like) { Tensor r = Tensor::empty(like.shape(), like.dtype()); std::memcpy(r.raw(), p, bytes); return r; }
};

void test_norm() {
  const std::int64_t rows_list[] = {1, 37, 300, 513};
  const std::int64_t dims[] = {8, 7, 64, 300, 1536};
  for (DType dt : {DType::f32, DType::bf16}) for (auto rows : rows_list) for (auto dim : dims) for (bool mis : {false, true}) {
    if (rows * dim > 400000) continue;
    char name[120]; std::snprintf(name, sizeof name, "rmsnorm %s rows%lld dim%lld%s", dn(dt), (long long)rows, (long long)dim, mis ? " misaligned" : "");
    Tensor x = make({rows, dim}, dt, uniform(rows * dim, -2, 2)), w = make({dim}, dt, uniform(dim, 0.5, 1.5));
    Tensor xf = widen(x), wf = widen(w);
    Tensor y_ref32 = garbage({rows, dim}, DType::f32), rstd_ref = garbage({rows}, DType::f32);
    ops::rmsnorm_forward(y_ref32, rstd_ref, xf, wf, 1e-6);
    Tensor y_ref = garbage({rows, dim}, dt); narrow_into(y_ref, y_ref32);
    Dev dx_(x, mis), dw_(w, mis), dy_(garbage({rows, dim}, dt), mis);
    Tensor rstd = garbage({rows}, DType::f32);
    cuda::rmsnorm_forward(dy_.get(), static_cast<float*>(rstd.raw()), dx_.get(), dw_.get(), cf(dt), rows, dim, 1e-6, nullptr);
    check(W("rmsnorm_forward y", dt), std::string(name) + " y", dy_.back(y_ref), y_ref, tol(dt, 1e-13, 1e-5));
    check(W("rmsnorm_forward rstd", dt), std::string(name) + " rstd", rstd, rstd_ref, 1e-13);
    // backward on the reference rstd
    Tensor g = make({rows, dim}, dt, uniform(rows * dim, -1, 1));
    auto dw0 = uniform(dim, -1, 1);
    Tensor dwt_ref32 = make({dim}, DType::f32, std::vector<float>(dw0)), dx_ref32 = garbage({rows, dim}, DType::f32);
    { Tensor dw0t = make({dim}, dt, dw0); dwt_ref32 = widen(dw0t); if (dt == DType::f32) dwt_ref32 = dwt_ref32.clone(); }
    ops::rmsnorm_backward(dx_ref32, dwt_ref32, widen(g), xf, wf, rstd_ref);
    Tensor dx_ref = garbage({rows, dim}, dt), dw_ref = garbage({dim}, dt);
    narrow_into(dx_ref, dx_ref32); narrow_into(dw_ref, dwt_ref32);
    Dev ddx(garbage({rows, dim}, dt), mis), dg(g, mis), ddw(make({dim}, dt, dw0), mis);
    cuda::rmsnorm_backward(ddx.get(), ddw.get(), dg.get(), dx_.get(), dw_.get(), static_cast<float*>(rstd_ref.raw()), cf(dt), rows, dim, nullptr);
    check(W("rmsnorm_backward dx", dt), std::string(name) + " dx", ddx.back(dx_ref), dx_ref, tol(dt, 1e-11, 1e-5));
    check(W("rmsnorm_backward dw (accumulated)", dt), std::string(name) + " dw", ddw.back(dw_ref), dw_ref, tol(dt, 1e-11, 1e-5));
  }
}

void test_loss() {
  struct LC { std::int64_t rows, classes; };
  const LC cases[] = {{1, 1}, {1, 7}, {37, 64}, {129, 1000}, {37, 1001}, {3, 129280}, {1100, 16}};
  for (DType dt : {DType::f32, DType::bf16}) for (DType it : {DType::i32, DType::i64}) for (const LC& c : cases) for (int variant = 0; variant < 3; ++variant) for (bool mis : {false, true}) {
    // variant 0: plain; 1: some ignored rows and -inf logits; 2: every row ignored
    char name[140]; std::snprintf(name, sizeof name, "cross_entropy %s %s rows%lld V%lld variant%d%s", dn(dt), it == DType::i32 ? "i32" : "i64", (long long)c.rows, (long long)c.classes, variant, mis ? " misaligned" : "");
    auto lv = uniform(c.rows * c.classes, -8, 8);
    std::vector<float> tv(c.rows);
    for (std::int64_t r = 0; r < c.rows; ++r) {
      tv[r] = static_cast<float>(g_rng() % c.classes);
      if (variant == 1 && r % 3 == 1) tv[r] = -100;
      if (variant == 2) tv[r] = -100;
      if (variant == 1 && c.classes > 2) { lv[r * c.classes + (r + 1) % c.classes] = -INFINITY; if (tv[r] >= 0) lv[r * c.classes + (std::int64_t)tv[r]] = 3; }
    }
    Tensor logits = make({c.rows, c.classes}, dt, lv), targets = make({c.rows}, it, tv);
    Tensor lf = widen(logits);
    Tensor loss_ref = garbage({}, DType::f32), lse_ref = garbage({c.rows}, DType::f32);
    ops::cross_entropy_forward(loss_ref, lse_ref, lf, targets);
    Dev dl(logits, mis);
    Tensor loss = garbage({}, DType::f32), lse = garbage({c.rows}, DType::f32);
    cuda::cross_entropy_forward(static_cast<float*>(loss.raw()), static_cast<float*>(lse.raw()), dl.get(), cf(dt), targets.raw(),
                                it == DType::i32 ? cuda::Index::i32 : cuda::Index::i64, c.rows, c.classes, -100, nullptr);
    check(W("cross_entropy_forward lse", dt), std::string(name) + " lse", lse, lse_ref, 1e-12);
    check(W("cross_entropy_forward loss", dt), std::string(name) + " loss", loss, loss_ref, 1e-9);  // lse − logit[target] cancels: 1 ulp of lse
    if (std::getenv("SHOW") && c.rows == 1) { std::printf("  %s loss emu %.9g ref %.9g lse emu %.9g ref %.9g logits", name, read(loss)[0], read(loss_ref)[0], read(lse)[0], read(lse_ref)[0]); for (double v : read(logits)) std::printf(" %.9g", v); std::printf(" target %g\n", tv[0]); }
    const double dloss = 1.0 / 37;
    Tensor d_ref32 = garbage({c.rows, c.classes}, DType::f32);
    ops::cross_entropy_backward(d_ref32, lf, lse_ref, targets, dloss);
    Tensor d_ref = garbage({c.rows, c.classes}, dt); narrow_into(d_ref, d_ref32);
    Dev dd(garbage({c.rows, c.classes}, dt), mis);
    cuda::cross_entropy_backward(dd.get(), dl.get(), cf(dt), static_cast<float*>(lse_ref.raw()), targets.raw(),
                                 it == DType::i32 ? cuda::Index::i32 : cuda::Index::i64, c.rows, c.classes, dloss, -100, nullptr);
    check(W("cross_entropy_backward", dt), std::string(name) + " dlogits", dd.back(d_ref), d_ref, tol(dt, 1e-11, 1e-5));
    if (dt == DType::f32 && !mis) {
      const std::int64_t want = ops::count_valid_targets(targets), got = cuda::count_valid_targets(targets.raw(), it == DType::i32 ? cuda::Index::i32 : cuda::Index::i64, c.rows, -100, nullptr);
      ++W("count_valid_targets", it).cases;
      if (want != got) { ++g_failures; std::printf("FAIL count_valid %s: %lld vs %lld\n", name, (long long)got, (long long)want); }
    }
  }
  // bad target: error
  {
    Tensor logits = make({4, 5}, DType::f32, uniform(20, -1, 1)), targets = make({4}, DType::i32, {1, 2, 7, 0});
    Tensor loss = garbage({}, DType::f32), lse = garbage({4}, DType::f32);
    std::string msg;
    try { cuda::cross_entropy_forward(static_cast<float*>(loss.raw()), static_cast<float*>(lse.raw()), logits.raw(), cuda::Float::f32, targets.raw(), cuda::Index::i32, 4, 5, -100, nullptr); } catch (const dsv3::Error& e) { msg = e.what(); }
    ++W("cross_entropy bad target error", DType::f32).cases;
    if (msg.find("row 2 is 7") == std::string::npos) { ++g_failures; std::printf("FAIL bad target message '%s'\n", msg.c_str()); }
  }
}

void test_optim() {
  for (std::int64_t n : {1, 7, 1000, 70001}) for (bool mis : {false, true}) for (std::int64_t step : {1, 10, 1000}) {
    char name[100]; std::snprintf(name, sizeof name, "adamw n%lld step%lld%s", (long long)n, (long long)step, mis ? " misaligned" : "");
    Tensor p = make({n}, DType::f32, uniform(n, -1, 1)), g = make({n}, DType::f32, uniform(n, -1e-2, 1e-2));
    Tensor m = make({n}, DType::f32, uniform(n, -1e-3, 1e-3)), v = make({n}, DType::f32, uniform(n, 0, 1e-5));
    ops::AdamWOptions o; o.lr = 3e-4; o.weight_decay = 0.1; o.step = step;
    Dev dp(p, mis), dg(g, mis), dm(m, mis), dv(v, mis);
    Tensor pr = p.clone(), mr = m.clone(), vr = v.clone();
    ops::adamw_step(pr, g, mr, vr, o);
    const double s = static_cast<double>(step);
    cuda::AdamWScalars sc{1.0 - o.lr * o.weight_decay, o.beta1, o.beta2, o.lr / (1.0 - std::pow(o.beta1, s)), std::sqrt(1.0 - std::pow(o.beta2, s)), o.eps};
    cuda::adamw_step(static_cast<float*>(dp.get()), static_cast<float*>(dg.get()), static_cast<float*>(dm.get()), static_cast<float*>(dv.get()), sc, n, nullptr);
    check(W("adamw param", DType::f32), std::string(name) + " param", dp.back(p), pr, 1e-14);
    check(W("adamw exp_avg", DType::f32), std::string(name) + " m", dm.back(m), mr, 1e-11);  // β1·m + (1−β1)·g cancels for n = 1
    check(W("adamw exp_avg_sq", DType::f32), std::string(name) + " v", dv.back(v), vr, 1e-14);
  }
  // sum_of_squares over several buffers (two stages, > kMaxSumBlocks·256 elements in one)
  std::vector<Tensor> ts = {make({300000}, DType::f32, uniform(300000, -1, 1)), make({1}, DType::bf16, {3}), make({0}, DType::f32, {}),
                            make({777}, DType::bf16, uniform(777, -5, 5)), make({262145}, DType::f32, uniform(262145, -1, 1))};
  for (std::size_t count = 1; count <= ts.size(); ++count) {
    std::vector<cuda::FloatBuffer> bufs;
    long double want = 0;
    for (std::size_t i = 0; i < count; ++i) {
      bufs.push_back({ts[i].raw(), cf(ts[i].dtype()), ts[i].numel()});
      for (double x : read(ts[i])) want += (long double)x * x;
    }
    const double got = cuda::sum_of_squares(bufs.data(), count, nullptr);
    const double rel = std::fabs(got - (double)want) / (double)want;
    Worst& w = W("sum_of_squares (rel err vs long double)", DType::f32); ++w.cases; w.nmse = std::max(w.nmse, rel);
    if (rel > 1e-12) { ++g_failures; std::printf("FAIL sum_of_squares count %zu: %.17g vs %.17g\n", count, got, (double)want); }
  }
  {  // vs the CPU op for one f32 tensor
    const double want = ops::sum_of_squares(ts[0]);
    cuda::FloatBuffer b{ts[0].raw(), cuda::Float::f32, ts[0].numel()};
    const double got = cuda::sum_of_squares(&b, 1, nullptr);
    Worst& w = W("sum_of_squares (rel err vs CPU op)", DType::f32); ++w.cases; w.nmse = std::max(w.nmse, std::fabs(got - want) / want);
  }
}

void test_rope() {
  ops::RopeConfig rc; rc.rope_dim = 64;
  const std::int64_t table_rows = 300;
  Tensor cos = garbage({table_rows, 32}, DType::f32), sin = garbage({table_rows, 32}, DType::f32);
  ops::rope_table(cos, sin, rc);
  for (DType dt : {DType::f32, DType::bf16}) for (DType tt : {DType::f32, DType::bf16}) for (std::int64_t T : {1, 37, 129}) for (std::int64_t H : {1, 3, 16}) {
    char name[100]; std::snprintf(name, sizeof name, "rope x %s table %s T%lld H%lld", dn(dt), dn(tt), (long long)T, (long long)H);
    Tensor x = make({T, H, 64}, dt, uniform(T * H * 64, -2, 2));
    std::vector<float> pos(T); for (auto& p : pos) p = g_rng() % table_rows;
    Tensor positions = make({T}, DType::i32, pos);
    Tensor c = cos, s = sin;
    if (tt == DType::bf16) { c = garbage(cos.shape(), DType::bf16); narrow_into(c, cos); s = garbage(sin.shape(), DType::bf16); narrow_into(s, sin); }
    for (bool inverse : {false, true}) {
      Tensor ref32 = garbage({T, H, 64}, DType::f32);
      if (!inverse) ops::rope_forward(ref32, widen(x), widen(c), widen(s), positions); else ops::rope_backward(ref32, widen(x), widen(c), widen(s), positions);
      Tensor ref = garbage({T, H, 64}, dt); narrow_into(ref, ref32);
      Tensor got = garbage({T, H, 64}, dt);
      cuda::rope_rotate(got.raw(), x.raw(), cf(dt), c.raw(), s.raw(), cf(tt), static_cast<std::int32_t*>(positions.raw()), T, H, 32, table_rows, inverse, nullptr, "rope");
      check(W(inverse ? "rope backward" : "rope forward", dt), std::string(name) + (inverse ? " backward" : " forward"), got, ref, tol(dt, 1e-13, 1e-5));
      // in place
      Tensor inplace = x.clone();
      cuda::rope_rotate(inplace.raw(), inplace.raw(), cf(dt), c.raw(), s.raw(), cf(tt), static_cast<std::int32_t*>(positions.raw()), T, H, 32, table_rows, inverse, nullptr, "rope");
      check(W("rope in place", dt), std::string(name) + " in place", inplace, got, 0, true);
    }
  }
}

void test_activation() {
  for (DType dt : {DType::f32, DType::bf16}) for (std::int64_t n : {1, 7, 8, 1000, 70001}) for (bool mis : {false, true}) {
    char name[100]; std::snprintf(name, sizeof name, "swiglu %s n%lld%s", dn(dt), (long long)n, mis ? " misaligned" : "");
    auto gv = uniform(n, -8, 8);
    if (n > 10) { gv[3] = 100; gv[4] = -100; gv[5] = 0; }
    Tensor gate = make({n}, dt, gv), up = make({n}, dt, uniform(n, -2, 2)), dh = make({n}, dt, uniform(n, -1, 1));
    Tensor h32 = garbage({n}, DType::f32);
    ops::swiglu_forward(h32, widen(gate), widen(up));
    Tensor h_ref = garbage({n}, dt); narrow_into(h_ref, h32);
    Dev dg(gate, mis), du(up, mis), dhh(garbage({n}, dt), mis), dd(dh, mis);
    cuda::swiglu_forward(dhh.get(), dg.get(), du.get(), cf(dt), n, nullptr);
    check(W("swiglu_forward", dt), name, dhh.back(h_ref), h_ref, tol(dt, 1e-13, 1e-5));
    Tensor dg32 = garbage({n}, DType::f32), du32 = garbage({n}, DType::f32);
    ops::swiglu_backward(dg32, du32, widen(dh), widen(gate), widen(up));
    Tensor dg_ref = garbage({n}, dt), du_ref = garbage({n}, dt); narrow_into(dg_ref, dg32); narrow_into(du_ref, du32);
    Dev ddg(garbage({n}, dt), mis), ddu(garbage({n}, dt), mis);
    cuda::swiglu_backward(ddg.get(), ddu.get(), dd.get(), dg.get(), du.get(), cf(dt), n, nullptr);
    check(W("swiglu_backward dgate", dt), std::string(name) + " dgate", ddg.back(dg_ref), dg_ref, tol(dt, 1e-13, 1e-5));
    check(W("swiglu_backward dup", dt), std::string(name) + " dup", ddu.back(du_ref), du_ref, tol(dt, 1e-13, 1e-5));
  }
}

void test_fp8() {
  struct FC { std::int64_t rows, cols; };
  const FC cases[] = {{1, 1}, {5, 130}, {128, 128}, {300, 200}, {129, 257}, {7, 1000}};
  for (const FC& c : cases) for (bool tiles : {false, true}) for (int variant = 0; variant < 3; ++variant) {
    // variant 0: random; 1: an all-zero block and values at ±large scales; 2: wide dynamic range incl. subnormal fp8 codes
    char name[100]; std::snprintf(name, sizeof name, "fp8 %s rows%lld cols%lld variant%d", tiles ? "tiles" : "blocks", (long long)c.rows, (long long)c.cols, variant);
    auto xv = uniform(c.rows * c.cols, -3, 3);
    if (variant == 1) { for (std::int64_t r = 0; r < std::min<std::int64_t>(c.rows, 128); ++r) for (std::int64_t k = 0; k < std::min<std::int64_t>(c.cols, 128); ++k) xv[r * c.cols + k] = 0; if (c.rows * c.cols > 200) xv[c.rows * c.cols - 1] = 1e30f; }
    if (variant == 2) for (auto& x : xv) x = std::ldexp(x, static_cast<int>(g_rng() % 30) - 20);
    Tensor x = make({c.rows, c.cols}, DType::f32, xv);
    const std::int64_t br = tiles ? 1 : 128, bc = 128;
    const std::int64_t gr = (c.rows + br - 1) / br, gc = (c.cols + bc - 1) / bc;
    Tensor q_ref = garbage({c.rows, c.cols}, DType::fp8_e4m3), s_ref = garbage({gr, gc}, DType::f32);
    if (tiles) ops::fp8_quantize_tiles(q_ref, s_ref, x); else ops::fp8_quantize_blocks(q_ref, s_ref, x);
    Tensor q = garbage({c.rows, c.cols}, DType::fp8_e4m3), s = garbage({gr, gc}, DType::f32);
    const cuda::NonFinite nf = cuda::fp8_quantize(q.raw(), static_cast<float*>(s.raw()), static_cast<float*>(x.raw()), c.rows, c.cols, br, bc, nullptr);
    if (nf.found) { ++g_failures; std::printf("FAIL %s: spurious non-finite\n", name); }
    check(W(tiles ? "fp8_quantize tiles q" : "fp8_quantize blocks q", DType::f32), std::string(name) + " q", q, q_ref, 0, true);
    check(W(tiles ? "fp8_quantize tiles scale_inv" : "fp8_quantize blocks scale_inv", DType::f32), std::string(name) + " scale_inv", s, s_ref, 0, true);
    Tensor d_ref = garbage({c.rows, c.cols}, DType::f32), d = garbage({c.rows, c.cols}, DType::f32);
    if (tiles) ops::fp8_dequantize_tiles(d_ref, q_ref, s_ref); else ops::fp8_dequantize_blocks(d_ref, q_ref, s_ref);
    cuda::fp8_dequantize(static_cast<float*>(d.raw()), q_ref.raw(), static_cast<float*>(s_ref.raw()), c.rows, c.cols, br, bc, nullptr);
    check(W(tiles ? "fp8_dequantize tiles" : "fp8_dequantize blocks", DType::f32), std::string(name) + " dequantize", d, d_ref, 0, true);
  }
  // non-finite: the first one in (block, row-major inside the block) order is reported
  for (bool tiles : {false, true}) {
    const std::int64_t rows = 300, cols = 260, br = tiles ? 1 : 128, bc = 128;
    auto xv = uniform(rows * cols, -1, 1);
    const std::int64_t bad[][2] = {{290, 10}, {200, 5}, {130, 200}, {5, 259}, {127, 255}};
    const float vals[] = {NAN, INFINITY, -INFINITY, NAN, INFINITY};
    for (int i = 0; i < 5; ++i) xv[bad[i][0] * cols + bad[i][1]] = vals[i];
    // expected: smallest (block index, row-in-block, col-in-block)
    std::int64_t best = -1, er = 0, ec = 0; const std::int64_t gcols = (cols + bc - 1) / bc;
    for (int i = 0; i < 5; ++i) {
      const std::int64_t r = bad[i][0], cc = bad[i][1];
      const std::int64_t key = ((r / br) * gcols + cc / bc) * br * bc + (r % br) * bc + cc % bc;
      if (best < 0 || key < best) { best = key; er = r; ec = cc; }
    }
    Tensor x = make({rows, cols}, DType::f32, xv);
    Tensor q = garbage({rows, cols}, DType::fp8_e4m3), s = garbage({(rows + br - 1) / br, gcols}, DType::f32);
    const cuda::NonFinite nf = cuda::fp8_quantize(q.raw(), static_cast<float*>(s.raw()), static_cast<float*>(x.raw()), rows, cols, br, bc, nullptr);
    ++W("fp8_quantize non-finite report", DType::f32).cases;
    if (!nf.found || nf.row != er || nf.col != ec || nf.block_row != er / br || nf.block_col != ec / bc) {
      ++g_failures; std::printf("FAIL fp8 non-finite %s: found %d at %lld,%lld (block %lld,%lld), want %lld,%lld\n", tiles ? "tiles" : "blocks", nf.found, (long long)nf.row, (long long)nf.col, (long long)nf.block_row, (long long)nf.block_col, (long long)er, (long long)ec);
    }
  }
}

void test_embedding() {
  for (DType dt : {DType::f32, DType::bf16}) for (DType it : {DType::i32, DType::i64}) for (std::int64_t dim : {1, 7, 8, 64, 300}) for (std::int64_t tokens : {1, 37, 1000}) for (bool mis : {false, true}) {
    const std::int64_t vocab = tokens == 1000 ? 50 : 1000;  // many repeats in the large case
    char name[120]; std::snprintf(name, sizeof name, "embedding %s %s dim%lld tokens%lld%s", dn(dt), it == DType::i32 ? "i32" : "i64", (long long)dim, (long long)tokens, mis ? " misaligned" : "");
    std::vector<float> idv(tokens); for (auto& v : idv) v = g_rng() % vocab;
    Tensor ids = make({tokens}, it, idv), table = make({vocab, dim}, dt, uniform(vocab * dim, -1, 1));
    Tensor y_ref = garbage({tokens, dim}, dt);
    { Tensor r32 = garbage({tokens, dim}, DType::f32); ops::embedding_forward(r32, widen(table), ids); narrow_into(y_ref, r32); }
    Dev dt_(table, mis), dy_(garbage({tokens, dim}, dt), mis);
    cuda::embedding_forward(dy_.get(), dt_.get(), cf(dt), ids.raw(), it == DType::i32 ? cuda::Index::i32 : cuda::Index::i64, tokens, vocab, dim, nullptr);
    check(W("embedding_forward", dt), std::string(name) + " forward", dy_.back(y_ref), y_ref, 0, true);
    Tensor g = make({tokens, dim}, dt, uniform(tokens * dim, -1, 1));
    Tensor dtable0 = make({vocab, dim}, dt, uniform(vocab * dim, -1, 1));
    Tensor d32 = widen(dtable0).clone();
    ops::embedding_backward(d32, widen(g), ids);
    Tensor d_ref = garbage({vocab, dim}, dt); narrow_into(d_ref, d32);
    Dev dd(dtable0, mis), dg(g, mis);
    cuda::embedding_backward(dd.get(), dg.get(), cf(dt), ids.raw(), it == DType::i32 ? cuda::Index::i32 : cuda::Index::i64, tokens, vocab, dim, nullptr);
    check(W("embedding_backward (accumulated)", dt), std::string(name) + " backward", dd.back(d_ref), d_ref, tol(dt, 1e-13, 1e-5));
  }
}

int main(int argc, char** argv) {
  const std::string only = argc > 1 ? argv[1] : "";
  if (only.empty() || only == "norm") test_norm();
  if (only.empty() || only == "loss") test_loss();
  if (only.empty() || only == "optim") test_optim();
  if (only.empty() || only == "rope") test_rope();
  if (only.empty() || only == "activation") test_activation();
  if (only.empty() || only == "fp8") test_fp8();
  if (only.empty() || only == "embedding") test_embedding();
  summary_all();
  return g_failures != 0;
}
