#include "dsv3/model/moe.hpp"
#include "dsv3/model/parameters.hpp"
#include "dsv3/ops/elementwise.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

using namespace dsv3;
using namespace dsv3::model;
using namespace dsv3::testing;

namespace {

constexpr std::int64_t kBatch = 2;
constexpr std::int64_t kSeq = 5;
constexpr std::int64_t kTokens = kBatch * kSeq;

// One routing configuration of a tiny MoE layer: E = 8 experts, top-3, D = 6, H = 4.
struct MoeCase {
  const char* name;
  ScoreFunction score = ScoreFunction::softmax;
  bool route_norm = false;
  double route_scale = 1.0;
  std::int64_t groups = 1;   // n_expert_groups
  std::int64_t limited = 1;  // n_limited_groups
  std::int64_t shared = 0;   // n_shared_experts
  bool bias = false;         // a random expert_bias large enough to change the selection
  double alpha = 0.0;        // balance_loss_coeff
  bool force = false;        // force_load_balance
};

const MoeCase kCases[] = {
    {.name = "softmax, top-3 of 8"},
    {.name = "softmax, route_norm, route_scale 2.5, two shared experts",
     .route_norm = true,
     .route_scale = 2.5,
     .shared = 2},
    {.name = "sigmoid, groups 4 limited 2, route_norm, route_scale 2.5, one shared expert, bias",
     .score = ScoreFunction::sigmoid,
     .route_norm = true,
     .route_scale = 2.5,
     .groups = 4,
     .limited = 2,
     .shared = 1,
     .bias = true},
    {.name = "sigmoid, bias, balance loss", .score = ScoreFunction::sigmoid, .bias = true, .alpha = 0.3},
    {.name = "softmax, groups 4 limited 2, route_scale 16, two shared experts, bias, balance loss",
     .route_scale = 16.0,
     .groups = 4,
     .limited = 2,
     .shared = 2,
     .bias = true,
     .alpha = 0.3},
    {.name = "forced load balance, sigmoid, route_norm, one shared expert, balance loss",
     .score = ScoreFunction::sigmoid,
     .route_norm = true,
     .shared = 1,
     .alpha = 0.3,
     .force = true},
};

// A one-layer model whose only FFN is the MoE; attention dims are tiny and irrelevant here.
ModelArgs tiny_args(const MoeCase& c, std::int64_t dim = 6, std::int64_t top_k = 3, std::int64_t experts = 8) {
  ModelArgs args;
  args.vocab_size = 8;
  args.dim = dim;
  args.moe_inter_dim = 4;
  args.n_layers = 1;
  args.n_dense_layers = 0;
  args.n_heads = 1;
  args.kv_lora_rank = 2;
  args.qk_nope_head_dim = 2;
  args.qk_rope_head_dim = 2;
  args.v_head_dim = 2;
  args.n_routed_experts = experts;
  args.n_shared_experts = c.shared;
  args.n_activated_experts = top_k;
  args.n_expert_groups = c.groups;
  args.n_limited_groups = c.limited;
  args.score_func = c.score;
  args.route_norm = c.route_norm;
  args.route_scale = c.route_scale;
  validate(args);
  return args;
}

MoeOptions options_of(const MoeCase& c) { return {.balance_loss_coeff = c.alpha, .force_load_balance = c.force}; }

BatchContext make_batch() {
  BatchContext batch;
  batch.batch = kBatch;
  batch.seq_len = kSeq;
  return batch;
}

// The MoE parameters of a one-layer ParameterStore in f64, and their gradients.
struct TinyMoe {
  ModelArgs args;
  ParameterStore store;
  MoeWeights weights;
  MoeWeights grads;
  Tensor bias;  // f32 [E]: zero unless the case asks for one

  TinyMoe(const ModelArgs& model_args, bool with_bias, Rng& rng)
      : args(model_args), store(parameter_specs(model_args), DType::f64) {
    weights = bind_weights(args, [&](const std::string& name) { return store.param(name); }).layers[0].moe;
    grads = bind_weights(args, [&](const std::string& name) { return store.grad(name); }).layers[0].moe;
    // A wide gate spreads the scores, so no two are within a finite-difference step of each other.
    ops::convert(weights.gate, random_normal(weights.gate.shape(), DType::f64, rng, 1.0));
    for (const Tensor& t : expert_tensors(weights))
      ops::convert(t, random_uniform(t.shape(), DType::f64, rng, -0.5, 0.5));
    bias = with_bias ? random_uniform(Shape{args.n_routed_experts}, DType::f32, rng, -0.2, 0.2)
                     : Tensor::zeros(Shape{args.n_routed_experts}, DType::f32);
  }

  // The routed and (when present) shared experts' weights of w.
  static std::vector<Tensor> expert_tensors(const MoeWeights& w) {
    std::vector<Tensor> tensors = {w.experts.w1, w.experts.w2, w.experts.w3};
    if (w.shared.w1.defined()) tensors.insert(tensors.end(), {w.shared.w1, w.shared.w2, w.shared.w3});
    return tensors;
  }
  // Every parameter of w, the gate first.
  static std::vector<Tensor> all_tensors(const MoeWeights& w) {
    std::vector<Tensor> tensors = {w.gate};
    for (const Tensor& t : expert_tensors(w)) tensors.push_back(t);
    return tensors;
  }
};

struct MoeRun {
  Tensor out;  // [T, D]
  MoeRecord record;
  double balance_loss = 0.0;
};

MoeRun run_moe(const TinyMoe& moe, const Tensor& x, const Tensor& tokens_per_expert, const MoeOptions& options) {
  MoeRun run;
  run.out = Tensor::empty(x.shape(), x.dtype());
  run.balance_loss =
      moe_forward(run.out, run.record, x, moe.weights, moe.bias, tokens_per_expert, moe.args, make_batch(), options);
  return run;
}

Tensor zero_counts(const ModelArgs& args) { return Tensor::zeros(Shape{args.n_routed_experts}, DType::i64); }

// ---- The naive reference: REFERENCE.md §2 token by token as plain loops in f64, sharing nothing with the layer. ----

// w2(silu(w1 x) · w3 x) for one token; w1, w3 [H, D], w2 [D, H] (one expert's slice of stacked weights).
std::vector<double> naive_swiglu(const std::vector<double>& x, const Tensor& w1, const Tensor& w2, const Tensor& w3) {
  const std::int64_t hidden = w1.size(0), dim = w1.size(1);
  std::vector<double> h(hidden), y(dim, 0.0);
  for (std::int64_t i = 0; i < hidden; ++i) {
    double gate = 0.0, up = 0.0;
    for (std::int64_t d = 0; d < dim; ++d) {
      gate += value_at(w1, i * dim + d) * x[d];
      up += value_at(w3, i * dim + d) * x[d];
    }
    h[i] = gate / (1.0 + std::exp(-gate)) * up;
  }
  for (std::int64_t d = 0; d < dim; ++d) {
    for (std::int64_t i = 0; i < hidden; ++i) y[d] += value_at(w2, d * hidden + i) * h[i];
  }
  return y;
}

struct NaiveMoe {
  std::vector<double> out;      // [T, D]
  std::vector<double> experts;  // [T, K]
  std::vector<double> counts;   // [E]
  double balance_loss = 0.0;
};

NaiveMoe naive_moe(const TinyMoe& moe, const Tensor& x, const Tensor& bias, const MoeCase& c) {
  const ModelArgs& a = moe.args;
  const MoeWeights& w = moe.weights;
  const std::int64_t E = a.n_routed_experts, K = a.n_activated_experts, D = a.dim, group_size = E / a.n_expert_groups;
  NaiveMoe result;
  result.out.assign(kTokens * D, 0.0);
  result.counts.assign(E, 0.0);
  std::vector<std::vector<double>> scores(kTokens);
  for (std::int64_t t = 0; t < kTokens; ++t) {
    std::vector<double> x_t(D);
    for (std::int64_t d = 0; d < D; ++d) x_t[d] = value_at(x, t * D + d);
    // Scores.
    std::vector<double> s(E);
    for (std::int64_t e = 0; e < E; ++e) {
      for (std::int64_t d = 0; d < D; ++d) s[e] += value_at(w.gate, e * D + d) * x_t[d];
    }
    if (a.score_func == ScoreFunction::sigmoid) {
      for (double& v : s) v = 1.0 / (1.0 + std::exp(-v));
    } else {
      double sum = 0.0;
      for (double v : s) sum += std::exp(v);
      for (double& v : s) v = std::exp(v) / sum;
    }
    scores[t] = s;
    // Selection: biased scores, losing groups masked with −inf, the K largest.
    std::vector<double> biased(E);
    for (std::int64_t e = 0; e < E; ++e) biased[e] = s[e] + static_cast<double>(bias.data<float>()[e]);
    std::vector<double> group_score(a.n_expert_groups);
    for (std::int64_t g = 0; g < a.n_expert_groups; ++g) {
      std::vector<double> members(biased.begin() + g * group_size, biased.begin() + (g + 1) * group_size);
      std::sort(members.rbegin(), members.rend());
      group_score[g] = members[0] + members[1];
    }
    std::vector<std::int64_t> groups(a.n_expert_groups);
    std::iota(groups.begin(), groups.end(), 0);
    std::stable_sort(groups.begin(), groups.end(), [&](auto i, auto j) { return group_score[i] > group_score[j]; });
    for (std::int64_t rank = a.n_limited_groups; rank < a.n_expert_groups; ++rank) {
      for (std::int64_t e = 0; e < group_size; ++e) biased[groups[rank] * group_size + e] = -INFINITY;
    }
    std::vector<std::int64_t> order(E);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](auto i, auto j) { return biased[i] > biased[j]; });
    if (c.force) {
      for (std::int64_t k = 0; k < K; ++k) order[k] = (t * K + k) % E;
    }
    // Weights and the weighted expert outputs.
    double chosen_sum = 0.0;
    for (std::int64_t k = 0; k < K; ++k) chosen_sum += s[order[k]];
    for (std::int64_t k = 0; k < K; ++k) {
      const std::int64_t e = order[k];
      const double weight = (a.route_norm ? s[e] / (chosen_sum + 1e-20) : s[e]) * a.route_scale;
      const std::vector<double> y = naive_swiglu(x_t, w.experts.w1[e], w.experts.w2[e], w.experts.w3[e]);
      for (std::int64_t d = 0; d < D; ++d) result.out[t * D + d] += weight * y[d];
      result.experts.push_back(static_cast<double>(e));
      result.counts[e] += 1.0;
    }
    if (a.n_shared_experts > 0) {
      const std::vector<double> y = naive_swiglu(x_t, w.shared.w1, w.shared.w2, w.shared.w3);
      for (std::int64_t d = 0; d < D; ++d) result.out[t * D + d] += y[d];
    }
  }
  // L = α Σ_i f_i P_i per sequence.
  for (std::int64_t b = 0; b < kBatch; ++b) {
    for (std::int64_t i = 0; i < E; ++i) {
      double chosen = 0.0, p = 0.0;
      for (std::int64_t t = b * kSeq; t < (b + 1) * kSeq; ++t) {
        for (std::int64_t k = 0; k < K; ++k) chosen += result.experts[t * K + k] == static_cast<double>(i);
        p += scores[t][i] / std::accumulate(scores[t].begin(), scores[t].end(), 0.0) / kSeq;
      }
      const double f = static_cast<double>(E) / static_cast<double>(K * kSeq) * chosen;
      result.balance_loss += c.alpha * f * p;
    }
  }
  return result;
}

// [values of t..., value]: a layer output with its balance loss appended, for one gradient check of both.
Tensor with_scalar(const Tensor& t, double value) {
  std::vector<double> values = to_vector(t);
  values.push_back(value);
  return from_values(Shape{t.numel() + 1}, DType::f64, values);
}

}  // namespace

TEST_CASE("moe_forward matches a per-token reference in f64; tokens_per_expert counts its selection and accumulates") {
  for (const MoeCase& c : kCases) {
    CAPTURE(c.name);
    Rng rng(21);
    const TinyMoe moe(tiny_args(c), c.bias, rng);
    const Tensor x = random_normal(Shape{kTokens, moe.args.dim}, DType::f64, rng);
    const NaiveMoe expected = naive_moe(moe, x, moe.bias, c);

    const Tensor counts = from_values(Shape{8}, DType::i64, {5, 0, 1, 0, 2, 0, 0, 7});  // from earlier micro-batches
    const std::vector<double> initial = to_vector(counts);
    const MoeRun run = run_moe(moe, x, counts, options_of(c));
    DSV3_CHECK_CLOSE(compare(run.out, from_values(run.out.shape(), DType::f64, expected.out), 1e-12, 1e-12));
    CHECK(to_vector(run.record.experts) == expected.experts);
    CHECK(run.balance_loss == doctest::Approx(expected.balance_loss).epsilon(1e-12));
    if (c.alpha > 0) CHECK(run.balance_loss > 0);
    run_moe(moe, x, counts, options_of(c));
    for (std::size_t e = 0; e < initial.size(); ++e) {
      CAPTURE(e);
      CHECK(value_at(counts, static_cast<std::int64_t>(e)) == initial[e] + 2 * expected.counts[e]);
    }
    if (c.bias && !c.force) {
      // The bias is large enough to matter: without it some token chooses differently.
      const NaiveMoe unbiased = naive_moe(moe, x, Tensor::zeros(Shape{8}, DType::f32), c);
      CHECK(unbiased.experts != expected.experts);
    }
  }
}

TEST_CASE("moe_backward: f64 gradient check of x and every weight, balance loss included") {
  for (const MoeCase& c : kCases) {
    CAPTURE(c.name);
    Rng rng(22);
    const TinyMoe moe(tiny_args(c), c.bias, rng);
    const Tensor x = random_normal(Shape{kTokens, moe.args.dim}, DType::f64, rng);
    const Tensor dout = random_uniform(x.shape(), DType::f64, rng);
    const double dbalance = 0.7;
    // Gradients accumulate: start them from random values and check what backward added.
    std::vector<Tensor> initial;
    for (const Tensor& g : TinyMoe::all_tensors(moe.grads)) {
      ops::convert(g, random_uniform(g.shape(), DType::f64, rng));
      initial.push_back(g.clone());
    }
    const MoeOptions options = options_of(c);
    const MoeRun run = run_moe(moe, x, zero_counts(moe.args), options);
    const Tensor dx = random_uniform(x.shape(), DType::f64, rng);  // overwritten: start from garbage
    moe_backward(dx, dout, run.record, x, moe.weights, moe.grads, moe.args, make_batch(), dbalance, options);

    std::vector<Tensor> inputs = {x}, analytic = {dx};
    const std::vector<Tensor> params = TinyMoe::all_tensors(moe.weights), grads = TinyMoe::all_tensors(moe.grads);
    for (std::size_t i = 0; i < params.size(); ++i) {
      inputs.push_back(params[i]);
      const Tensor added = grads[i].clone();
      ops::axpy(added, -1.0, initial[i]);
      analytic.push_back(added);
    }
    // L = Σ dout ⊙ out + dbalance · balance_loss; the selection must not move under the finite-difference steps.
    std::int64_t moved_selections = 0;
    const auto forward = [&] {
      const MoeRun again = run_moe(moe, x, zero_counts(moe.args), options);
      moved_selections += !compare(again.record.experts, run.record.experts, 0.0, 0.0).ok;
      return with_scalar(again.out, again.balance_loss);
    };
    DSV3_CHECK_CLOSE(check_gradients(forward, with_scalar(dout, dbalance), inputs, analytic));
    CHECK(moved_selections == 0);
  }
}

TEST_CASE("sequence-wise balance loss by hand: E=4, B=2 sequences of S=2, scores 0.1..0.4") {
  // dim 2: token kind a = [1, 0] has scores (0.1, 0.2, 0.3, 0.4), kind b = [0, 1] the reverse, for softmax
  // (logits ln 1..4) and for sigmoid (logits ln(p/(1−p)), whose sum is 1 as well). Sequences: (a, a) and (a, b).
  const Tensor x = from_values(Shape{kBatch * 2, 2}, DType::f64, {1, 0, 1, 0, 1, 0, 0, 1});
  BatchContext batch;
  batch.batch = 2;
  batch.seq_len = 2;
  const double alpha = 0.01;
  for (ScoreFunction score : {ScoreFunction::softmax, ScoreFunction::sigmoid}) {
    // top-1: (a, a) both choose 3: f_3 = 4/(1·2)·2 = 4, P_3 = 0.4 → 1.6α; (a, b) choose 3 and 0: f_0 = f_3 = 2,
    //   P_0 = P_3 = 0.25 → α. top-2: (a, a): f_3 = f_2 = 4/(2·2)·2 = 2, P_3 = 0.4, P_2 = 0.3 → 1.4α;
    //   (a, b): every f_i = 1, every P_i = 0.25 → α.
    for (const auto& [top_k, expected] :
         {std::pair{std::int64_t{1}, 2.6 * alpha}, std::pair{std::int64_t{2}, 2.4 * alpha}}) {
      CAPTURE(score);
      CAPTURE(top_k);
      MoeCase c{.name = "by hand", .score = score};
      Rng rng(23);
      const TinyMoe moe(tiny_args(c, 2, top_k, 4), false, rng);
      std::vector<double> gate;  // [E, 2]: column 0 the logits of kind a, column 1 those of kind b
      for (double p : {0.1, 0.2, 0.3, 0.4}) {
        const double logit = score == ScoreFunction::softmax ? std::log(p) : std::log(p / (1.0 - p));
        const double reversed = score == ScoreFunction::softmax ? std::log(0.5 - p) : std::log((0.5 - p) / (0.5 + p));
        gate.insert(gate.end(), {logit, reversed});
      }
      ops::convert(moe.weights.gate, from_values(Shape{4, 2}, DType::f64, gate));
      const Tensor out = Tensor::empty(x.shape(), DType::f64);
      MoeRecord record;
      const Tensor counts = zero_counts(moe.args);
      const double loss =
          moe_forward(out, record, x, moe.weights, moe.bias, counts, moe.args, batch, {.balance_loss_coeff = alpha});
      CHECK(loss == doctest::Approx(expected).epsilon(1e-14));
      CHECK(moe_forward(out, record, x, moe.weights, moe.bias, counts, moe.args, batch, {}) == 0.0);
    }
  }
}

TEST_CASE("forced load balance spreads the tokens round-robin even when the bias sends them all to one expert") {
  const MoeCase c{.name = "forced"};
  Rng rng(24);
  TinyMoe moe(tiny_args(c), false, rng);
  moe.bias.data<float>()[0] = 10.0f;  // every token's first choice is expert 0
  const Tensor x = random_normal(Shape{kTokens, moe.args.dim}, DType::f64, rng);
  const std::int64_t top_k = moe.args.n_activated_experts;

  const Tensor routed = zero_counts(moe.args);
  run_moe(moe, x, routed, {});
  CHECK(value_at(routed, 0) == kTokens);

  const Tensor forced = zero_counts(moe.args);
  const MoeRun run = run_moe(moe, x, forced, {.force_load_balance = true});
  // 30 assignments over 8 experts: 3 or 4 each.
  for (std::int64_t e = 0; e < 8; ++e) {
    CAPTURE(e);
    CHECK(value_at(forced, e) >= 3);
    CHECK(value_at(forced, e) <= 4);
  }
  for (std::int64_t i = 0; i < kTokens * top_k; ++i) {
    const std::int64_t expert = static_cast<std::int64_t>(value_at(run.record.experts, i));
    CHECK(expert == i % 8);
    // Weights: the unbiased scores of the forced experts (no route_norm, route_scale 1).
    CHECK(value_at(run.record.weights, i) == value_at(run.record.scores, (i / top_k) * 8 + expert));
  }
}

TEST_CASE("update_expert_bias: Δ = coeff·sign(mean(n) − n), centred, added to the f32 bias") {
  const std::vector<double> start = {0.25, -0.5, 0.0, 1.0};
  const auto updated = [&](const std::vector<double>& counts) {
    const Tensor bias = from_values(Shape{4}, DType::f32, start);
    update_expert_bias(bias, from_values(Shape{4}, DType::i64, counts), 1e-3);
    return to_vector(bias);
  };
  const auto plus = [&](const std::vector<double>& delta) {
    std::vector<double> expected;
    for (std::size_t e = 0; e < start.size(); ++e) {
      expected.push_back(static_cast<float>(static_cast<float>(start[e]) + static_cast<float>(delta[e])));
    }
    return expected;
  };
  // Mean 3: signs (+, −, 0, 0), already centred.
  CHECK(updated({1, 5, 3, 3}) == plus({1e-3, -1e-3, 0.0, 0.0}));
  // Mean 2: signs (+, +, +, −), mean sign 0.5 subtracted.
  CHECK(updated({0, 0, 0, 8}) == plus({0.5e-3, 0.5e-3, 0.5e-3, -1.5e-3}));
  // Perfect balance leaves the bias alone.
  CHECK(updated({2, 2, 2, 2}) == start);

  CHECK_THROWS_WITH_AS(update_expert_bias(Tensor::zeros(Shape{4}, DType::f64), Tensor::zeros(Shape{4}, DType::i64), 1),
                       doctest::Contains("update_expert_bias: expert_bias is f64[4]@cpu, expected dtype f32"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(update_expert_bias(Tensor::zeros(Shape{4}, DType::f32), Tensor::zeros(Shape{3}, DType::i64), 1),
                       doctest::Contains("update_expert_bias: tokens_per_expert is i64[3]@cpu, expected shape [4]"),
                       dsv3::Error);
}

TEST_CASE("moe rejects a batch of the wrong shape, bad token counts and a backward without forward") {
  const MoeCase c{.name = "errors"};
  Rng rng(25);
  const TinyMoe moe(tiny_args(c), false, rng);
  const Tensor x = Tensor::zeros(Shape{kTokens + 1, moe.args.dim}, DType::f64);
  MoeRecord record;
  CHECK_THROWS_WITH_AS(
      moe_forward(x, record, x, moe.weights, moe.bias, zero_counts(moe.args), moe.args, make_batch(), {}),
      doctest::Contains("moe_forward: x is f64[11, 6]@cpu, expected [B·S = 10, dim = 6]"), dsv3::Error);
  const Tensor good = Tensor::zeros(Shape{kTokens, moe.args.dim}, DType::f64);
  CHECK_THROWS_WITH_AS(moe_forward(good, record, good, moe.weights, moe.bias, Tensor::zeros(Shape{8}, DType::i32),
                                   moe.args, make_batch(), {}),
                       doctest::Contains("moe_forward: tokens_per_expert is i32[8]@cpu, expected dtype i64"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(moe_backward(good, good, record, good, moe.weights, moe.grads, moe.args, make_batch(), 0.0, {}),
                       doctest::Contains("moe_backward: the record is empty"), dsv3::Error);
}
