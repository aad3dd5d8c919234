#include "dsv3/ops/matmul.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace dsv3;
using namespace dsv3::testing;

namespace {

// c[i, j] = Σ_p op(a)[i, p] · op(b)[p, j], by the definition.
Tensor naive_matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b) {
  const std::int64_t m = transpose_a ? a.size(1) : a.size(0);
  const std::int64_t k = transpose_a ? a.size(0) : a.size(1);
  const std::int64_t n = transpose_b ? b.size(0) : b.size(1);
  Tensor c = Tensor::zeros(Shape{m, n}, DType::f64);
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      double sum = 0.0;
      for (std::int64_t p = 0; p < k; ++p) {
        const double av = value_at(a, transpose_a ? p * m + i : i * k + p);
        const double bv = value_at(b, transpose_b ? j * k + p : p * n + j);
        sum += av * bv;
      }
      c.data<double>()[i * n + j] = sum;
    }
  }
  return c;
}

Tensor offsets_of(const std::vector<std::int64_t>& counts) {
  Tensor offsets = Tensor::empty(Shape{static_cast<std::int64_t>(counts.size()) + 1}, DType::i64);
  offsets.data<std::int64_t>()[0] = 0;
  for (std::size_t e = 0; e < counts.size(); ++e) {
    offsets.data<std::int64_t>()[e + 1] = offsets.data<std::int64_t>()[e] + counts[e];
  }
  return offsets;
}

// Runs the ops of its scope on `threads` OpenMP threads: ctest runs every test with OMP_NUM_THREADS=1, and the
// products cut their work into panels only when there is more than one.
class OpenMpThreads {
 public:
#ifdef _OPENMP
  explicit OpenMpThreads(int threads) : saved_(omp_get_max_threads()) { omp_set_num_threads(threads); }
  ~OpenMpThreads() { omp_set_num_threads(saved_); }
#else
  explicit OpenMpThreads(int) {}
#endif
  OpenMpThreads(const OpenMpThreads&) = delete;
  OpenMpThreads& operator=(const OpenMpThreads&) = delete;

 private:
  [[maybe_unused]] int saved_ = 1;
};

}  // namespace

TEST_CASE("matmul matches the definition for every transpose, odd sizes, both dtypes") {
  Rng rng(1);
  for (DType dtype : {DType::f32, DType::f64}) {
    for (auto [m, k, n] : {std::array<std::int64_t, 3>{1, 1, 1}, {7, 13, 5}, {33, 17, 65}, {64, 128, 3}}) {
      for (bool ta : {false, true}) {
        for (bool tb : {false, true}) {
          CAPTURE(m);
          CAPTURE(k);
          CAPTURE(n);
          CAPTURE(ta);
          CAPTURE(tb);
          const Tensor a = random_uniform(ta ? Shape{k, m} : Shape{m, k}, dtype, rng);
          const Tensor b = random_uniform(tb ? Shape{n, k} : Shape{k, n}, dtype, rng);
          const Tensor c = Tensor::empty(Shape{m, n}, dtype);
          ops::matmul(c, a, b, {.transpose_a = ta, .transpose_b = tb});
          const double rtol = dtype == DType::f32 ? 1e-5 : 1e-12;
          DSV3_CHECK_CLOSE(compare(c, naive_matmul(a, b, ta, tb), rtol, rtol));
        }
      }
    }
  }
}

TEST_CASE("matmul: alpha, beta accumulation, batches and a broadcast b") {
  Rng rng(2);
  const Tensor a = random_uniform(Shape{3, 5, 4}, DType::f64, rng);
  const Tensor b_batched = random_uniform(Shape{3, 4, 6}, DType::f64, rng);
  const Tensor b_shared = random_uniform(Shape{6, 4}, DType::f64, rng);
  const Tensor c0 = random_uniform(Shape{3, 5, 6}, DType::f64, rng);

  Tensor c = c0.clone();
  ops::matmul(c, a, b_batched, {.alpha = 2.0, .beta = 0.5});
  for (std::int64_t i = 0; i < 3; ++i) {
    Tensor expected = naive_matmul(a[i], b_batched[i], false, false);
    for (std::int64_t j = 0; j < expected.numel(); ++j) {
      expected.data<double>()[j] = 2.0 * expected.data<double>()[j] + 0.5 * c0[i].data<double>()[j];
    }
    DSV3_CHECK_CLOSE(compare(c[i], expected, 1e-12, 1e-12));
  }

  ops::matmul(c, a, b_shared, {.transpose_b = true});
  for (std::int64_t i = 0; i < 3; ++i) {
    DSV3_CHECK_CLOSE(compare(c[i], naive_matmul(a[i], b_shared, false, true), 1e-12, 1e-12));
  }
}

TEST_CASE("linear: forward is x·wᵀ over leading axes; f64 gradient check of dx and dw") {
  Rng rng(3);
  const Tensor x = random_uniform(Shape{2, 3, 7}, DType::f64, rng);
  const Tensor w = random_uniform(Shape{5, 7}, DType::f64, rng);
  const Tensor y = Tensor::empty(Shape{2, 3, 5}, DType::f64);
  ops::linear_forward(y, x, w);
  DSV3_CHECK_CLOSE(compare(y.view(Shape{6, 5}), naive_matmul(x.view(Shape{6, 7}), w, false, true), 1e-12, 1e-12));

  const Tensor dy = random_uniform(y.shape(), DType::f64, rng);
  const Tensor dx = Tensor::empty(x.shape(), DType::f64);
  const Tensor dw_initial = random_uniform(w.shape(), DType::f64, rng);
  const Tensor dw = dw_initial.clone();
  ops::linear_backward(dx, dw, dy, x, w);
  // dw accumulates: subtract what was there to compare the fresh contribution.
  const Tensor dw_fresh = Tensor::empty(w.shape(), DType::f64);
  for (std::int64_t i = 0; i < dw.numel(); ++i) {
    dw_fresh.data<double>()[i] = dw.data<double>()[i] - dw_initial.data<double>()[i];
  }
  const auto forward = [&] {
    Tensor out = Tensor::empty(y.shape(), DType::f64);
    ops::linear_forward(out, x, w);
    return out;
  };
  DSV3_CHECK_CLOSE(check_gradients(forward, dy, {x, w}, {dx, dw_fresh}));

  // dx may be skipped (the first layer needs no input gradient).
  const Tensor dw_only = Tensor::zeros(w.shape(), DType::f64);
  ops::linear_backward(Tensor(), dw_only, dy, x, w);
  DSV3_CHECK_CLOSE(compare(dw_only, dw_fresh, 1e-12, 1e-12));
}

TEST_CASE("grouped_linear: each expert's rows use its own weight, empty experts included; gradient check") {
  Rng rng(4);
  const std::vector<std::int64_t> counts{3, 0, 5, 1, 0};
  const Tensor offsets = offsets_of(counts);
  const std::int64_t tokens = 9, in = 6, out = 4, experts = 5;
  const Tensor x = random_uniform(Shape{tokens, in}, DType::f64, rng);
  const Tensor w = random_uniform(Shape{experts, out, in}, DType::f64, rng);
  const Tensor y = Tensor::empty(Shape{tokens, out}, DType::f64);
  ops::grouped_linear_forward(y, x, w, offsets);
  for (std::int64_t e = 0; e < experts; ++e) {
    const std::int64_t begin = offsets.data<std::int64_t>()[e], end = offsets.data<std::int64_t>()[e + 1];
    if (begin == end) continue;
    DSV3_CHECK_CLOSE(compare(y.rows(begin, end), naive_matmul(x.rows(begin, end), w[e], false, true), 1e-12, 1e-12));
  }

  const Tensor dy = random_uniform(y.shape(), DType::f64, rng);
  const Tensor dx = Tensor::empty(x.shape(), DType::f64);
  const Tensor dw = Tensor::zeros(w.shape(), DType::f64);
  ops::grouped_linear_backward(dx, dw, dy, x, w, offsets);
  const auto forward = [&] {
    Tensor result = Tensor::empty(y.shape(), DType::f64);
    ops::grouped_linear_forward(result, x, w, offsets);
    return result;
  };
  DSV3_CHECK_CLOSE(check_gradients(forward, dy, {x, w}, {dx, dw}));
  // Experts without tokens get exactly zero gradient.
  for (double value : to_vector(dw[1])) CHECK(value == 0.0);
  for (double value : to_vector(dw[4])) CHECK(value == 0.0);
}

TEST_CASE("grouped_linear in f32 matches f64 on the same data") {
  Rng rng(5);
  const Tensor offsets = offsets_of({0, 17, 2, 0, 12});
  const Tensor x64 = random_uniform(Shape{31, 19}, DType::f64, rng);
  const Tensor w64 = random_uniform(Shape{5, 11, 19}, DType::f64, rng);
  const Tensor x32 = from_values(x64.shape(), DType::f32, to_vector(x64));
  const Tensor w32 = from_values(w64.shape(), DType::f32, to_vector(w64));
  const Tensor y64 = Tensor::empty(Shape{31, 11}, DType::f64);
  const Tensor y32 = Tensor::empty(Shape{31, 11}, DType::f32);
  ops::grouped_linear_forward(y64, x64, w64, offsets);
  ops::grouped_linear_forward(y32, x32, w32, offsets);
  DSV3_CHECK_CLOSE(compare(y32, y64, 1e-5, 1e-5));
}

TEST_CASE("matmul ops reject bad shapes, dtypes and offsets with the op and shapes in the message") {
  const Tensor a = Tensor::zeros(Shape{3, 4}, DType::f32);
  const Tensor b = Tensor::zeros(Shape{5, 6}, DType::f32);
  const Tensor c = Tensor::zeros(Shape{3, 6}, DType::f32);
  CHECK_THROWS_WITH_AS(ops::matmul(c, a, b), doctest::Contains("matmul: inner extents differ: a f32[3, 4]@cpu"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::matmul(c, a, Tensor::zeros(Shape{4, 6}, DType::f64)),
                       doctest::Contains("different dtypes"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::matmul(Tensor::zeros(Shape{3, 6}, DType::bf16), a, a),
                       doctest::Contains("expected f32 or f64"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::linear_forward(Tensor::zeros(Shape{3, 5}, DType::f32), a, b),
                       doctest::Contains("linear_forward: x f32[3, 4]@cpu does not end in w's input extent 6"),
                       dsv3::Error);
  const Tensor x = Tensor::zeros(Shape{4, 2}, DType::f32);
  const Tensor w = Tensor::zeros(Shape{2, 3, 2}, DType::f32);
  const Tensor y = Tensor::zeros(Shape{4, 3}, DType::f32);
  CHECK_THROWS_WITH_AS(ops::grouped_linear_forward(y, x, w, offsets_of({1, 2})),
                       doctest::Contains("offsets run from 0 to 3, expected 0 to 4"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::grouped_linear_forward(y, x, w, offsets_of({1, 2, 1})),
                       doctest::Contains("offsets is i64[4]@cpu, expected shape [3]"), dsv3::Error);
}

TEST_CASE("matmul, linear_backward and grouped_linear cut across threads match the definition and repeat bit for bit") {
  const OpenMpThreads threads(3);
  Rng rng(6);
  // Products large enough to be cut: by rows (n ≤ m) and by columns, with panels that do not divide evenly.
  for (auto [m, k, n] : {std::array<std::int64_t, 3>{300, 80, 130}, {70, 200, 400}}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        CAPTURE(m);
        CAPTURE(n);
        CAPTURE(ta);
        CAPTURE(tb);
        const Tensor a = random_uniform(ta ? Shape{k, m} : Shape{m, k}, DType::f32, rng);
        const Tensor b = random_uniform(tb ? Shape{n, k} : Shape{k, n}, DType::f32, rng);
        const Tensor c = Tensor::empty(Shape{m, n}, DType::f32);
        const Tensor again = Tensor::empty(Shape{m, n}, DType::f32);
        ops::matmul(c, a, b, {.transpose_a = ta, .transpose_b = tb});
        ops::matmul(again, a, b, {.transpose_a = ta, .transpose_b = tb});
        DSV3_CHECK_CLOSE(compare(c, naive_matmul(a, b, ta, tb), 2e-5, 2e-5));
        CHECK(to_vector(c) == to_vector(again));
      }
    }
  }

  // linear_backward runs dx and dw at once, one on part of the threads and one on the rest.
  const Tensor x_dense = random_uniform(Shape{300, 80}, DType::f64, rng);
  const Tensor w_dense = random_uniform(Shape{130, 80}, DType::f64, rng);
  const Tensor dy_dense = random_uniform(Shape{300, 130}, DType::f64, rng);
  const Tensor dx_dense = Tensor::empty(x_dense.shape(), DType::f64);
  const Tensor dw_dense = Tensor::zeros(w_dense.shape(), DType::f64);
  ops::linear_backward(dx_dense, dw_dense, dy_dense, x_dense, w_dense);
  DSV3_CHECK_CLOSE(compare(dx_dense, naive_matmul(dy_dense, w_dense, false, false), 1e-12, 1e-12));
  DSV3_CHECK_CLOSE(compare(dw_dense, naive_matmul(dy_dense, x_dense, true, false), 1e-12, 1e-12));

  // Experts with no, few and many rows: the large ones are cut into several panels.
  const Tensor offsets = offsets_of({0, 5, 300, 64, 130});
  const std::int64_t tokens = 499, in = 40, out = 48, experts = 5;
  const Tensor x = random_uniform(Shape{tokens, in}, DType::f64, rng);
  const Tensor w = random_uniform(Shape{experts, out, in}, DType::f64, rng);
  const Tensor y = Tensor::empty(Shape{tokens, out}, DType::f64);
  ops::grouped_linear_forward(y, x, w, offsets);
  const Tensor dy = random_uniform(y.shape(), DType::f64, rng);
  const Tensor dx = Tensor::empty(x.shape(), DType::f64);
  const Tensor dw = random_uniform(w.shape(), DType::f64, rng);
  const Tensor dw_initial = dw.clone();
  ops::grouped_linear_backward(dx, dw, dy, x, w, offsets);
  for (std::int64_t e = 0; e < experts; ++e) {
    CAPTURE(e);
    const std::int64_t begin = offsets.data<std::int64_t>()[e], end = offsets.data<std::int64_t>()[e + 1];
    const Tensor dw_expected = naive_matmul(dy.rows(begin, end), x.rows(begin, end), true, false);
    const double* initial = dw_initial[e].data<double>();  // dw accumulates
    for (std::int64_t i = 0; i < dw_expected.numel(); ++i) dw_expected.data<double>()[i] += initial[i];
    DSV3_CHECK_CLOSE(compare(dw[e], dw_expected, 1e-12, 1e-12));
    if (begin == end) continue;
    DSV3_CHECK_CLOSE(compare(y.rows(begin, end), naive_matmul(x.rows(begin, end), w[e], false, true), 1e-12, 1e-12));
    DSV3_CHECK_CLOSE(compare(dx.rows(begin, end), naive_matmul(dy.rows(begin, end), w[e], false, false), 1e-12, 1e-12));
  }
}
