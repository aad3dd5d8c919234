#include "dsv3/ops/attention.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <limits>

using namespace dsv3;
using namespace dsv3::testing;

namespace {

struct Extents {
  std::int64_t batch, seq, heads, qk_dim, v_dim;
};

struct Inputs {
  Tensor q, k, v, document_ids;  // document_ids undefined for the causal mask
  ops::AttentionOptions options;
};

// q, k, v uniform in [-range, range); scale qk_dim^-0.5 unless given.
Inputs random_inputs(const Extents& e, DType dtype, Rng& rng, double range = 1.0, double scale = 0.0) {
  return {random_uniform(Shape{e.batch, e.seq, e.heads, e.qk_dim}, dtype, rng, -range, range),
          random_uniform(Shape{e.batch, e.seq, e.heads, e.qk_dim}, dtype, rng, -range, range),
          random_uniform(Shape{e.batch, e.seq, e.heads, e.v_dim}, dtype, rng, -range, range),
          Tensor(),
          {.scale = scale > 0.0 ? scale : 1.0 / std::sqrt(static_cast<double>(e.qk_dim))}};
}

// Packed documents of the given lengths, the last one running to the end of the sequence, with ids 0, 1, 2, …
// as running EOS counts give them; the same layout in every batch row.
Tensor packed_documents(std::int64_t batch, std::int64_t seq, const std::vector<std::int64_t>& lengths) {
  std::vector<double> row;
  double document = 0;
  for (std::int64_t length : lengths) {
    for (std::int64_t i = 0; i < length && static_cast<std::int64_t>(row.size()) < seq; ++i) row.push_back(document);
    ++document;
  }
  row.resize(static_cast<std::size_t>(seq), document);
  std::vector<double> ids;
  for (std::int64_t b = 0; b < batch; ++b) ids.insert(ids.end(), row.begin(), row.end());
  return from_values(Shape{batch, seq}, DType::i32, ids);
}

void use_documents(Inputs& inputs, Tensor document_ids) {
  inputs.document_ids = std::move(document_ids);
  inputs.options.mask = ops::AttentionMask::document_causal;
}

struct Result {
  Tensor out, lse;
};

// The definition, in f64: each query row's full row of scaled scores, masked, softmax, times v.
Result naive_attention(const Inputs& in) {
  const std::int64_t B = in.q.size(0), S = in.q.size(1), H = in.q.size(2), Dqk = in.q.size(3), Dv = in.v.size(3);
  const std::vector<double> q = to_vector(in.q), k = to_vector(in.k), v = to_vector(in.v);
  // The causal mask is the document-causal mask of a single document.
  const std::vector<double> ids =
      in.document_ids.defined() ? to_vector(in.document_ids) : std::vector<double>(static_cast<std::size_t>(B * S));
  const auto at = [](const std::vector<double>& values, std::int64_t index) {
    return values[static_cast<std::size_t>(index)];
  };
  Result result{Tensor::zeros(Shape{B, S, H, Dv}, DType::f64), Tensor::zeros(Shape{B, H, S}, DType::f64)};
  std::vector<double> scores(static_cast<std::size_t>(S));
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t h = 0; h < H; ++h) {
      for (std::int64_t i = 0; i < S; ++i) {
        double max_score = -std::numeric_limits<double>::infinity();
        for (std::int64_t j = 0; j <= i; ++j) {
          double score = -std::numeric_limits<double>::infinity();
          if (at(ids, b * S + j) == at(ids, b * S + i)) {
            score = 0.0;
            for (std::int64_t d = 0; d < Dqk; ++d) {
              score += at(q, ((b * S + i) * H + h) * Dqk + d) * at(k, ((b * S + j) * H + h) * Dqk + d);
            }
            score *= in.options.scale;
          }
          scores[static_cast<std::size_t>(j)] = score;
          max_score = std::max(max_score, score);
        }
        double sum = 0.0;
        for (std::int64_t j = 0; j <= i; ++j) sum += std::exp(scores[static_cast<std::size_t>(j)] - max_score);
        result.lse.data<double>()[(b * H + h) * S + i] = max_score + std::log(sum);
        double* out_row = result.out.data<double>() + ((b * S + i) * H + h) * Dv;
        for (std::int64_t j = 0; j <= i; ++j) {
          const double p = std::exp(scores[static_cast<std::size_t>(j)] - max_score) / sum;
          for (std::int64_t d = 0; d < Dv; ++d) out_row[d] += p * at(v, ((b * S + j) * H + h) * Dv + d);
        }
      }
    }
  }
  return result;
}

Result run_forward(const Inputs& in) {
  const DType dtype = in.q.dtype();
  const Shape lse_shape{in.q.size(0), in.q.size(2), in.q.size(1)};
  Result result{Tensor::empty(in.v.shape(), dtype), Tensor::empty(lse_shape, dtype)};
  ops::attention_forward(result.out, result.lse, in.q, in.k, in.v, in.document_ids, in.options);
  return result;
}

struct Gradients {
  Tensor dq, dk, dv;
};

// Backward into gradient tensors filled with garbage first, so that a kernel which accumulates instead of
// overwriting fails.
Gradients run_backward(const Inputs& in, const Result& forward, const Tensor& dout, Rng& rng) {
  const DType dtype = in.q.dtype();
  Gradients g{random_uniform(in.q.shape(), dtype, rng, 5.0, 6.0), random_uniform(in.k.shape(), dtype, rng, 5.0, 6.0),
              random_uniform(in.v.shape(), dtype, rng, 5.0, 6.0)};
  ops::attention_backward(g.dq, g.dk, g.dv, dout, in.q, in.k, in.v, forward.out, forward.lse, in.document_ids,
                          in.options);
  return g;
}

void check_forward(const Inputs& in) {
  const Result actual = run_forward(in);
  const Result expected = naive_attention(in);
  const double tolerance = in.q.dtype() == DType::f32 ? 2e-6 : 1e-12;
  DSV3_CHECK_CLOSE(compare(actual.out, expected.out, tolerance, tolerance));
  DSV3_CHECK_CLOSE(compare(actual.lse, expected.lse, tolerance, tolerance));
}

void check_backward(const Inputs& in, Rng& rng, std::int64_t max_elements) {
  const Result forward = run_forward(in);
  const Tensor dout = random_uniform(in.v.shape(), DType::f64, rng);
  const Gradients g = run_backward(in, forward, dout, rng);
  const auto attention = [&] { return run_forward(in).out; };
  DSV3_CHECK_CLOSE(check_gradients(attention, dout, {in.q, in.k, in.v}, {g.dq, g.dk, g.dv},
                                   {.max_elements = max_elements}));
}

// Sequence lengths around the kernel's tiles (64 rows up to S 512, 192 beyond): single rows, odd lengths, several
// tiles with a partial last one.
constexpr std::array<Extents, 6> kShapes{{
    {1, 1, 1, 3, 2},
    {1, 7, 2, 5, 3},
    {2, 130, 2, 6, 4},
    {1, 200, 3, 8, 8},
    {2, 333, 1, 12, 5},
    {1, 600, 2, 4, 7},
}};

}  // namespace

TEST_CASE("attention_forward matches the definition: causal, f32 and f64, odd shapes, several tiles") {
  Rng rng(1);
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const Extents& e : kShapes) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(e.seq);
      check_forward(random_inputs(e, dtype, rng));
    }
  }
}

TEST_CASE("attention_forward matches the definition: document_causal, one-token and multi-tile documents") {
  Rng rng(2);
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const Extents& e : kShapes) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(e.seq);
      // Short documents, single tokens among them, then longer ones: tiles cross documents, and late query
      // tiles see none of the early key tiles' documents.
      Inputs short_documents = random_inputs(e, dtype, rng);
      use_documents(short_documents, packed_documents(e.batch, e.seq, {3, 1, 20, 1, 57, 90, 2, 200}));
      check_forward(short_documents);
      // A long first document: whole tiles inside one document, then a single token, then the rest.
      Inputs long_document = random_inputs(e, dtype, rng);
      use_documents(long_document, packed_documents(e.batch, e.seq, {530, 1}));
      check_forward(long_document);
      // Ids need not be sorted: queries see the earlier keys with their own id, wherever they are.
      Inputs interleaved = random_inputs(e, dtype, rng);
      use_documents(interleaved, random_uniform(Shape{e.batch, e.seq}, DType::i32, rng, 0, 3));
      check_forward(interleaved);
    }
  }
}

TEST_CASE("attention_forward keeps the online softmax stable for large scores") {
  // Scores up to ±100: the running max moves from tile to tile, exp without the max shift would overflow.
  Rng rng(3);
  for (DType dtype : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dtype));
    const Extents e{1, 300, 2, 16, 4};
    Inputs in = random_inputs(e, dtype, rng, 2.5, 1.0);
    const Result actual = run_forward(in);
    const Result expected = naive_attention(in);
    const double tolerance = dtype == DType::f32 ? 1e-5 : 1e-11;
    DSV3_CHECK_CLOSE(compare(actual.out, expected.out, tolerance, tolerance));
    DSV3_CHECK_CLOSE(compare(actual.lse, expected.lse, tolerance, tolerance));
  }
}

TEST_CASE("attention_backward: f64 gradient check of dq, dk, dv, causal and document_causal") {
  Rng rng(4);
  const Extents small{2, 9, 2, 5, 3};
  check_backward(random_inputs(small, DType::f64, rng), rng, 256);
  Inputs documents = random_inputs(small, DType::f64, rng);
  use_documents(documents, packed_documents(small.batch, small.seq, {2, 1, 4}));
  check_backward(documents, rng, 256);
}

TEST_CASE("attention_backward: f64 gradient check across several tiles") {
  Rng rng(5);
  for (const Extents& e : {Extents{1, 300, 1, 4, 3}, Extents{1, 600, 1, 4, 3}}) {  // both tile sizes
    CAPTURE(e.seq);
    check_backward(random_inputs(e, DType::f64, rng), rng, 64);
    Inputs documents = random_inputs(e, DType::f64, rng);
    use_documents(documents, packed_documents(e.batch, e.seq, {70, 1, 150}));
    check_backward(documents, rng, 64);
  }
}

TEST_CASE("attention_backward in f32 matches f64 on the same data") {
  Rng rng(6);
  const Extents e{2, 333, 2, 12, 5};
  Inputs in64 = random_inputs(e, DType::f64, rng);
  use_documents(in64, packed_documents(e.batch, e.seq, {100, 1, 130}));
  Inputs in32 = in64;
  in32.q = from_values(in64.q.shape(), DType::f32, to_vector(in64.q));
  in32.k = from_values(in64.k.shape(), DType::f32, to_vector(in64.k));
  in32.v = from_values(in64.v.shape(), DType::f32, to_vector(in64.v));
  const Tensor dout64 = random_uniform(in64.v.shape(), DType::f64, rng);
  const Tensor dout32 = from_values(dout64.shape(), DType::f32, to_vector(dout64));
  const Gradients g64 = run_backward(in64, run_forward(in64), dout64, rng);
  const Gradients g32 = run_backward(in32, run_forward(in32), dout32, rng);
  DSV3_CHECK_CLOSE(compare(g32.dq, g64.dq, 1e-5, 2e-6));
  DSV3_CHECK_CLOSE(compare(g32.dk, g64.dk, 1e-5, 2e-6));
  DSV3_CHECK_CLOSE(compare(g32.dv, g64.dv, 1e-5, 2e-6));
}

TEST_CASE("attention ops reject bad shapes, dtypes, document ids and scales, naming op and tensors") {
  Rng rng(7);
  const Inputs in = random_inputs({1, 8, 2, 6, 5}, DType::f32, rng);
  const Tensor &q = in.q, &k = in.k, &v = in.v, none;
  const Tensor out = Tensor::empty(v.shape(), DType::f32), lse = Tensor::empty(Shape{1, 2, 8}, DType::f32);
  const ops::AttentionOptions causal = in.options;
  const ops::AttentionOptions document_causal{.scale = 0.5, .mask = ops::AttentionMask::document_causal};
  const auto f32 = [](Shape shape) { return Tensor::zeros(shape, DType::f32); };
  const auto i32 = [](Shape shape) { return Tensor::zeros(shape, DType::i32); };

  CHECK_THROWS_WITH_AS(ops::attention_forward(out, lse, q, k, f32({1, 7, 2, 5}), none, causal),
                       doctest::Contains("attention_forward: v is f32[1, 7, 2, 5]@cpu, expected shape [1, 8, 2, 5]"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::attention_forward(out, lse, q, f32({1, 8, 2, 4}), v, none, causal),
                       doctest::Contains("attention_forward: k is f32[1, 8, 2, 4]@cpu, expected shape [1, 8, 2, 6]"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::attention_forward(out, lse, q.view(Shape{8, 2, 6}), k, v, none, causal),
                       doctest::Contains("attention_forward: q is f32[8, 2, 6]@cpu, expected rank 4"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::attention_forward(f32({1, 8, 2, 6}), lse, q, k, v, none, causal),
                       doctest::Contains("attention_forward: out is f32[1, 8, 2, 6]@cpu, expected shape [1, 8, 2, 5]"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::attention_forward(out, f32({1, 8, 2}), q, k, v, none, causal),
                       doctest::Contains("attention_forward: lse is f32[1, 8, 2]@cpu, expected shape [1, 2, 8]"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::attention_forward(out, lse, q, k, Tensor::zeros(v.shape(), DType::f64), none, causal),
                       doctest::Contains("attention_forward: tensors of different dtypes"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::attention_forward(out, lse, Tensor::zeros(q.shape(), DType::bf16), k, v, none, causal),
                       doctest::Contains("attention_forward: q is bf16[1, 8, 2, 6]@cpu, expected f32 or f64"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::attention_forward(out, lse, q, k, v, none, {.scale = 0.0}),
                       doctest::Contains("attention_forward: scale is 0, expected a finite value > 0"), dsv3::Error);

  CHECK_THROWS_WITH_AS(ops::attention_forward(out, lse, q, k, v, none, document_causal),
                       doctest::Contains("attention_forward: argument document_ids is undefined"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::attention_forward(out, lse, q, k, v, Tensor::zeros(Shape{1, 8}, DType::i64),
                                              document_causal),
                       doctest::Contains("attention_forward: document_ids is i64[1, 8]@cpu, expected dtype i32"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::attention_forward(out, lse, q, k, v, i32({1, 7}), document_causal),
                       doctest::Contains("attention_forward: document_ids is i32[1, 7]@cpu, expected shape [1, 8]"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::attention_forward(out, lse, q, k, v, i32({1, 8}), causal),
                       doctest::Contains("attention_forward: document_ids i32[1, 8]@cpu given with the causal mask"),
                       dsv3::Error);

  const Tensor dq = f32(q.shape()), dk = f32(k.shape()), dv = f32(v.shape()), dout = f32(v.shape());
  CHECK_THROWS_WITH_AS(ops::attention_backward(f32({1, 8, 2, 5}), dk, dv, dout, q, k, v, out, lse, none, causal),
                       doctest::Contains("attention_backward: dq is f32[1, 8, 2, 5]@cpu, expected shape [1, 8, 2, 6]"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(
      ops::attention_backward(dq, dk, dv, f32({1, 8, 2, 6}), q, k, v, out, lse, none, causal),
      doctest::Contains("attention_backward: dout is f32[1, 8, 2, 6]@cpu, expected shape [1, 8, 2, 5]"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::attention_backward(dq, dk, Tensor::zeros(v.shape(), DType::f64), dout, q, k, v, out, lse,
                                               none, causal),
                       doctest::Contains("attention_backward: tensors of different dtypes"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::attention_backward(dq, dk, dv, dout, q, k, v, out, lse, none, document_causal),
                       doctest::Contains("attention_backward: argument document_ids is undefined"), dsv3::Error);
}
