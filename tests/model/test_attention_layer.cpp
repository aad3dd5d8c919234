#include "dsv3/model/attention.hpp"
#include "dsv3/model/parameters.hpp"
#include "dsv3/ops/elementwise.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

using namespace dsv3;
using namespace dsv3::model;
using namespace dsv3::testing;

namespace {

constexpr std::int64_t kBatch = 2;
constexpr std::int64_t kSeq = 9;
constexpr std::int64_t kTokens = kBatch * kSeq;
// Document ids per sequence (running EOS counts): three documents in the first, two in the second.
const std::vector<double> kDocuments = {0, 0, 0, 1, 1, 1, 1, 2, 2,  //
                                        0, 0, 0, 0, 0, 1, 1, 1, 1};

// One layer of tiny dims. YaRN is on (rope_factor 40), and original_seq_len 1000 puts the ramp between pairs 0 and 2
// for rope dim 4 with theta 1e4, so the second pair's frequency is a genuine blend (checked below).
ModelArgs tiny_args(std::int64_t q_lora_rank, MaskType mask) {
  ModelArgs args;
  args.vocab_size = 16;
  args.dim = 8;
  args.inter_dim = 12;
  args.n_layers = 1;
  args.n_dense_layers = 1;
  args.n_heads = 2;
  args.q_lora_rank = q_lora_rank;
  args.kv_lora_rank = 6;
  args.qk_nope_head_dim = 4;
  args.qk_rope_head_dim = 4;
  args.v_head_dim = 3;
  args.mask = mask;
  args.max_seq_len = 16;
  args.original_seq_len = 1000;
  args.rope_factor = 40.0;
  validate(args);
  return args;
}

// The tensors of an AttentionWeights that the configuration uses, by name, in a fixed order.
std::vector<std::pair<std::string, Tensor>> named_tensors(const AttentionWeights& w) {
  std::vector<std::pair<std::string, Tensor>> named = {{"wq", w.wq},       {"wq_a", w.wq_a},   {"q_norm", w.q_norm},
                                                       {"wq_b", w.wq_b},   {"wkv_a", w.wkv_a}, {"kv_norm", w.kv_norm},
                                                       {"wkv_b", w.wkv_b}, {"wo", w.wo}};
  std::erase_if(named, [](const auto& entry) { return !entry.second.defined(); });
  return named;
}

// A one-layer ParameterStore whose attention weights hold non-trivial random values (norms in [0.5, 1.5], not ones).
struct TinyLayer {
  ModelArgs args;
  ParameterStore store;
  AttentionWeights weights;
  AttentionWeights grads;

  TinyLayer(const ModelArgs& model_args, DType dtype, Rng& rng)
      : args(model_args), store(parameter_specs(model_args), dtype) {
    weights = bind_weights(args, [&](const std::string& name) { return store.param(name); }).layers[0].attention;
    grads = bind_weights(args, [&](const std::string& name) { return store.grad(name); }).layers[0].attention;
    for (const auto& [name, tensor] : named_tensors(weights)) {
      const bool norm = tensor.rank() == 1;
      ops::convert(tensor, random_uniform(tensor.shape(), DType::f64, rng, norm ? 0.5 : -0.5, norm ? 1.5 : 0.5));
    }
  }
};

// B = 2 sequences of S = 9; positions start at 2·b (as in a later context-parallel chunk) so the layer must read them.
BatchContext make_batch(const ModelArgs& args, DType dtype) {
  BatchContext batch;
  batch.batch = kBatch;
  batch.seq_len = kSeq;
  std::vector<double> positions;
  for (std::int64_t t = 0; t < kTokens; ++t) positions.push_back(static_cast<double>(t % kSeq + 2 * (t / kSeq)));
  batch.positions = from_values(Shape{kTokens}, DType::i32, positions);
  if (args.mask == MaskType::document_causal) {
    batch.document_ids = from_values(Shape{kBatch, kSeq}, DType::i32, kDocuments);
  }
  make_rope_tables(batch, args, dtype, Device::cpu);
  return batch;
}

Tensor run_forward(const AttentionWeights& weights, const ModelArgs& args, const BatchContext& batch, const Tensor& x) {
  const Tensor out = Tensor::empty(x.shape(), x.dtype());
  AttentionRecord record;
  attention_forward(out, record, x, weights, args, batch);
  return out;
}

// ---- The naive reference: REFERENCE.md §2 written out as loops, in f64, sharing nothing with the layer. ----

// y = W·x for W [out, in] row-major.
std::vector<double> matvec(const std::vector<double>& w, const std::vector<double>& x) {
  const std::size_t in = x.size(), out = w.size() / in;
  std::vector<double> y(out, 0.0);
  for (std::size_t o = 0; o < out; ++o) {
    for (std::size_t i = 0; i < in; ++i) y[o] += w[o * in + i] * x[i];
  }
  return y;
}

std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<double>& w, double eps) {
  double mean_square = 0.0;
  for (double value : x) mean_square += value * value / static_cast<double>(x.size());
  std::vector<double> y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] / std::sqrt(mean_square + eps) * w[i];
  return y;
}

// YaRN's blend of pair i between its original frequency (0) and the interpolated one (1).
double yarn_ramp(const ModelArgs& a, std::int64_t i) {
  const double rope = static_cast<double>(a.qk_rope_head_dim);
  const auto correction_dim = [&](double rotations) {
    return rope * std::log(static_cast<double>(a.original_seq_len) / (2.0 * std::numbers::pi * rotations)) /
           (2.0 * std::log(a.rope_theta));
  };
  const double low = std::clamp(std::floor(correction_dim(a.beta_fast)), 0.0, rope - 1.0);
  const double high = std::clamp(std::ceil(correction_dim(a.beta_slow)), 0.0, rope - 1.0);
  return std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
}

double yarn_frequency(const ModelArgs& a, std::int64_t i) {
  const double f = std::pow(a.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(a.qk_rope_head_dim));
  const double ramp = yarn_ramp(a, i);
  return f / a.rope_factor * ramp + f * (1.0 - ramp);
}

// Rotates the adjacent pairs (x[2i], x[2i+1]) of x[first, first + rope) by position·f_i.
void rotate(std::vector<double>& x, std::size_t first, const ModelArgs& a, double position) {
  for (std::int64_t i = 0; i < a.qk_rope_head_dim / 2; ++i) {
    const double angle = position * yarn_frequency(a, i);
    double& x0 = x[first + 2 * i];
    double& x1 = x[first + 2 * i + 1];
    const double rotated0 = x0 * std::cos(angle) - x1 * std::sin(angle);
    x1 = x0 * std::sin(angle) + x1 * std::cos(angle);
    x0 = rotated0;
  }
}

Tensor naive_attention(const Tensor& x, const AttentionWeights& w, const ModelArgs& a, const BatchContext& batch) {
  const std::size_t H = a.n_heads, N = a.qk_nope_head_dim, R = a.qk_rope_head_dim, V = a.v_head_dim;
  const std::size_t QK = N + R, L = a.kv_lora_rank, D = a.dim;
  const double m = 0.1 * a.mscale * std::log(a.rope_factor) + 1.0;
  const double scale = m * m / std::sqrt(static_cast<double>(QK));

  const auto values = [](const Tensor& tensor) { return tensor.defined() ? to_vector(tensor) : std::vector<double>{}; };
  const std::vector<double> xs = values(x), wq = values(w.wq), wq_a = values(w.wq_a), q_norm = values(w.q_norm),
                            wq_b = values(w.wq_b), wkv_a = values(w.wkv_a), kv_norm = values(w.kv_norm),
                            wkv_b = values(w.wkv_b);
  const std::vector<double> wo = values(w.wo);  // [D, H·V], input column h·V + d

  // Per token: q rows [H·QK] (head h: [nope | rope]), k_pe [R], wkv_b rows [H·(N + V)] (head h: [k_nope | v]).
  std::vector<std::vector<double>> q(kTokens), k_pe(kTokens), kv(kTokens);
  for (std::int64_t t = 0; t < kTokens; ++t) {
    const std::vector<double> x_t(xs.begin() + t * D, xs.begin() + (t + 1) * D);
    const double position = value_at(batch.positions, t);
    q[t] = a.q_lora_rank == 0 ? matvec(wq, x_t) : matvec(wq_b, rmsnorm(matvec(wq_a, x_t), q_norm, a.norm_eps));
    for (std::size_t h = 0; h < H; ++h) rotate(q[t], h * QK + N, a, position);
    const std::vector<double> kv_a = matvec(wkv_a, x_t);  // [L latent | R k_pe]
    k_pe[t].assign(kv_a.begin() + L, kv_a.end());
    rotate(k_pe[t], 0, a, position);
    kv[t] = matvec(wkv_b, rmsnorm({kv_a.begin(), kv_a.begin() + L}, kv_norm, a.norm_eps));
  }

  const Tensor out = Tensor::zeros(Shape{kTokens, static_cast<std::int64_t>(D)}, DType::f64);
  for (std::int64_t b = 0; b < kBatch; ++b) {
    for (std::int64_t i = 0; i < kSeq; ++i) {
      const std::int64_t query = b * kSeq + i;
      std::vector<double> heads_out(H * V, 0.0);
      for (std::size_t h = 0; h < H; ++h) {
        // Full softmax over the keys the mask lets query i see.
        std::vector<double> scores(kSeq, -INFINITY);
        for (std::int64_t j = 0; j <= i; ++j) {
          const std::int64_t key = b * kSeq + j;
          const bool same_document =
              a.mask == MaskType::causal || value_at(batch.document_ids, key) == value_at(batch.document_ids, query);
          if (!same_document) continue;
          double dot = 0.0;
          for (std::size_t d = 0; d < N; ++d) dot += q[query][h * QK + d] * kv[key][h * (N + V) + d];
          for (std::size_t d = 0; d < R; ++d) dot += q[query][h * QK + N + d] * k_pe[key][d];
          scores[j] = dot * scale;
        }
        const double max_score = *std::max_element(scores.begin(), scores.end());
        double sum = 0.0;
        for (double& score : scores) sum += (score = std::exp(score - max_score));
        for (std::int64_t j = 0; j < kSeq; ++j) {
          const std::vector<double>& key_kv = kv[b * kSeq + j];
          for (std::size_t d = 0; d < V; ++d) heads_out[h * V + d] += scores[j] / sum * key_kv[h * (N + V) + N + d];
        }
      }
      const std::vector<double> y = matvec(wo, heads_out);
      std::copy(y.begin(), y.end(), out.data<double>() + query * D);
    }
  }
  return out;
}

const std::vector<std::pair<std::int64_t, MaskType>> kConfigs = {
    {0, MaskType::causal}, {0, MaskType::document_causal}, {5, MaskType::causal}, {5, MaskType::document_causal}};

}  // namespace

TEST_CASE("the tiny config exercises YaRN: a pair with a fractional ramp, so interpolated and original blend") {
  const ModelArgs args = tiny_args(0, MaskType::causal);
  CHECK(yarn_ramp(args, 0) == 0.0);
  CHECK(yarn_ramp(args, 1) > 0.0);
  CHECK(yarn_ramp(args, 1) < 1.0);
}

TEST_CASE("attention_forward matches a naive MLA (REFERENCE.md §2 layouts, YaRN, masks) in f64") {
  Rng rng(11);
  for (const auto& [q_lora_rank, mask] : kConfigs) {
    CAPTURE(q_lora_rank);
    CAPTURE(mask == MaskType::causal ? "causal" : "document_causal");
    const TinyLayer layer(tiny_args(q_lora_rank, mask), DType::f64, rng);
    const BatchContext batch = make_batch(layer.args, DType::f64);
    const Tensor x = random_uniform(Shape{kTokens, layer.args.dim}, DType::f64, rng);

    const Tensor out = Tensor::empty(x.shape(), DType::f64);
    AttentionRecord record;
    attention_forward(out, record, x, layer.weights, layer.args, batch);
    DSV3_CHECK_CLOSE(compare(out, naive_attention(x, layer.weights, layer.args, batch), 1e-12, 1e-12));

    // k_pe is one head shared by all: the rope columns of k agree across heads.
    const std::int64_t heads = layer.args.n_heads, qk = layer.args.qk_head_dim();
    const double* k = record.k.data<double>();  // [B, S, H, qk]
    for (std::int64_t t = 0; t < kTokens; ++t) {
      for (std::int64_t h = 1; h < heads; ++h) {
        for (std::int64_t d = layer.args.qk_nope_head_dim; d < qk; ++d) {
          CHECK(k[(t * heads + h) * qk + d] == k[t * heads * qk + d]);
        }
      }
    }
  }
}

TEST_CASE("attention_backward: f64 finite-difference check of dx and every weight; gradients accumulate") {
  Rng rng(12);
  for (const auto& [q_lora_rank, mask] : kConfigs) {
    CAPTURE(q_lora_rank);
    CAPTURE(mask == MaskType::causal ? "causal" : "document_causal");
    TinyLayer layer(tiny_args(q_lora_rank, mask), DType::f64, rng);
    const BatchContext batch = make_batch(layer.args, DType::f64);
    const Tensor x = random_uniform(Shape{kTokens, layer.args.dim}, DType::f64, rng);

    const Tensor out = Tensor::empty(x.shape(), DType::f64);
    AttentionRecord record;
    attention_forward(out, record, x, layer.weights, layer.args, batch);
    const Tensor dout = random_uniform(out.shape(), DType::f64, rng);
    const Tensor dx = random_uniform(x.shape(), DType::f64, rng);  // garbage: dx is overwritten
    layer.store.zero_grads();
    attention_backward(dx, dout, record, x, layer.weights, layer.grads, layer.args, batch);

    std::vector<Tensor> inputs = {x};
    std::vector<Tensor> analytic = {dx};
    const auto weights = named_tensors(layer.weights);
    const auto grads = named_tensors(layer.grads);
    REQUIRE(weights.size() == (q_lora_rank == 0 ? 5u : 7u));
    for (std::size_t i = 0; i < weights.size(); ++i) {
      inputs.push_back(weights[i].second);
      analytic.push_back(grads[i].second.clone());
    }
    DSV3_CHECK_CLOSE(check_gradients([&] { return run_forward(layer.weights, layer.args, batch, x); }, dout, inputs,
                                     analytic, {.tolerance = 1e-7, .step = 1e-6, .max_elements = 256}));

    // A second backward, without dx, adds the same weight gradients again.
    attention_backward(Tensor{}, dout, record, x, layer.weights, layer.grads, layer.args, batch);
    for (std::size_t i = 0; i < grads.size(); ++i) {
      CAPTURE(grads[i].first);
      const Tensor twice = analytic[i + 1].clone();
      ops::scale(twice, 2.0);
      DSV3_CHECK_CLOSE(compare(grads[i].second, twice, 1e-13, 1e-13));
    }
  }
}

TEST_CASE("the document-causal mask isolates documents: a change to one document leaves later ones unchanged") {
  Rng rng(13);
  const TinyLayer layer(tiny_args(5, MaskType::document_causal), DType::f64, rng);
  const Tensor x = random_uniform(Shape{kTokens, layer.args.dim}, DType::f64, rng);
  // Document 0 of sequence 0 is tokens [0, 3); documents 1 and 2 follow it in the same sequence.
  const Tensor x_changed = x.clone();
  ops::convert(x_changed.rows(0, 3), random_uniform(Shape{3, layer.args.dim}, DType::f64, rng));

  const auto outputs_of = [&](const ModelArgs& args, const Tensor& input) {
    return run_forward(layer.weights, args, make_batch(args, DType::f64), input);
  };
  const Tensor out = outputs_of(layer.args, x);
  const Tensor out_changed = outputs_of(layer.args, x_changed);
  CHECK_FALSE(compare(out_changed.rows(0, 3), out.rows(0, 3), 1e-6, 1e-6).ok);                // the change shows
  DSV3_CHECK_CLOSE(compare(out_changed.rows(3, kTokens), out.rows(3, kTokens), 0.0, 1e-14));  // nowhere else

  // The same change under the plain causal mask reaches the later documents: the check above can fail.
  ModelArgs causal = layer.args;
  causal.mask = MaskType::causal;
  const Tensor causal_out = outputs_of(causal, x);
  const Tensor causal_out_changed = outputs_of(causal, x_changed);
  CHECK_FALSE(compare(causal_out_changed.rows(3, kSeq), causal_out.rows(3, kSeq), 1e-6, 1e-6).ok);
}

TEST_CASE("attention in f32 (the training dtype) agrees with f64 on the same values") {
  Rng rng(14);
  for (const std::int64_t q_lora_rank : {0, 5}) {
    CAPTURE(q_lora_rank);
    const ModelArgs args = tiny_args(q_lora_rank, MaskType::document_causal);
    TinyLayer layer64(args, DType::f64, rng);
    TinyLayer layer32(args, DType::f32, rng);
    const auto weights64 = named_tensors(layer64.weights), weights32 = named_tensors(layer32.weights);
    for (std::size_t i = 0; i < weights64.size(); ++i) ops::convert(weights32[i].second, weights64[i].second);
    layer64.store.zero_grads();
    layer32.store.zero_grads();
    const Tensor x64 = random_uniform(Shape{kTokens, args.dim}, DType::f64, rng);
    const Tensor dout64 = random_uniform(x64.shape(), DType::f64, rng);

    // Forward and backward of one layer in its dtype: out and dx.
    const auto run = [&](TinyLayer& layer, DType dtype) {
      const BatchContext batch = make_batch(args, dtype);
      const Tensor x = Tensor::empty(x64.shape(), dtype);
      const Tensor dout = Tensor::empty(x64.shape(), dtype);
      ops::convert(x, x64);
      ops::convert(dout, dout64);
      const Tensor out = Tensor::empty(x.shape(), dtype);
      const Tensor dx = Tensor::empty(x.shape(), dtype);
      AttentionRecord record;
      attention_forward(out, record, x, layer.weights, args, batch);
      attention_backward(dx, dout, record, x, layer.weights, layer.grads, args, batch);
      return std::pair{out, dx};
    };
    const auto [out64, dx64] = run(layer64, DType::f64);
    const auto [out32, dx32] = run(layer32, DType::f32);
    DSV3_CHECK_CLOSE(compare(out32, out64, 1e-4, 1e-5));
    DSV3_CHECK_CLOSE(compare(dx32, dx64, 1e-4, 1e-5));
    const auto grads64 = named_tensors(layer64.grads), grads32 = named_tensors(layer32.grads);
    for (std::size_t i = 0; i < grads64.size(); ++i) {
      CAPTURE(grads64[i].first);
      DSV3_CHECK_CLOSE(compare(grads32[i].second, grads64[i].second, 1e-4, 1e-5));
    }
  }
}

TEST_CASE("attention_forward and attention_backward reject activations of the wrong shape") {
  Rng rng(15);
  const TinyLayer layer(tiny_args(0, MaskType::causal), DType::f64, rng);
  const BatchContext batch = make_batch(layer.args, DType::f64);
  const Tensor x = random_uniform(Shape{kTokens, layer.args.dim}, DType::f64, rng);
  const Tensor short_x = Tensor::zeros(Shape{kTokens - 1, layer.args.dim}, DType::f64);
  AttentionRecord record;
  CHECK_THROWS_WITH_AS(attention_forward(short_x, record, short_x, layer.weights, layer.args, batch),
                       doctest::Contains("attention_forward: x is f64[17, 8]@cpu, expected [B·S = 18, dim = 8]"),
                       Error);
  CHECK_THROWS_WITH_AS(attention_backward(x, x, record, x, layer.weights, layer.grads, layer.args, batch),
                       doctest::Contains("attention_backward: the record is empty"), Error);
}
