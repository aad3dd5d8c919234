// The whole Transformer: finite-difference gradients of every parameter in f64 on tiny models that together cover
// every option of the architecture, the loss of the debug model at init, expert load counting, and bad batches.
#include "dsv3/model/model_record.hpp"
#include "dsv3/model/transformer.hpp"
#include "dsv3/ops/elementwise.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

using namespace dsv3;
using namespace dsv3::model;
using namespace dsv3::testing;

namespace {

constexpr std::int64_t kBatch = 2;
constexpr std::int64_t kSeq = 7;
constexpr std::int64_t kTokens = kBatch * kSeq;

// Tiny widths; YaRN on (rope_factor 40) with original_seq_len 1000 so that for rope dim 4 the second frequency pair is
// a genuine blend of interpolated and original.
ModelArgs tiny_args() {
  ModelArgs args;
  args.flavor = "tiny";
  args.vocab_size = 23;
  args.dim = 12;
  args.inter_dim = 16;
  args.moe_inter_dim = 6;
  args.n_layers = 2;
  args.n_dense_layers = 1;
  args.n_heads = 2;
  args.n_routed_experts = 4;
  args.n_shared_experts = 1;
  args.n_activated_experts = 2;
  args.kv_lora_rank = 6;
  args.qk_nope_head_dim = 4;
  args.qk_rope_head_dim = 4;
  args.v_head_dim = 3;
  args.max_seq_len = 8;
  args.original_seq_len = 1000;
  args.rope_factor = 40.0;
  return args;
}

struct TinyModel {
  std::string name;
  ModelArgs args;
  TrainingOptions options;
};

// Between them: q_lora 0 and > 0; softmax and sigmoid scores; group-limited routing with route_norm and route_scale ≠
// 1; dense and MoE layers; with and without shared experts; causal and document-causal masks; the balance loss.
std::vector<TinyModel> tiny_models() {
  std::vector<TinyModel> models;

  TinyModel plain{"softmax top-2 of 4, one shared expert, q_lora 0, causal", tiny_args(), {}};
  models.push_back(plain);

  TinyModel routed{"sigmoid, 4 groups keep 2, route_norm, route_scale 2.5, q_lora 5, documents, balance loss",
                   tiny_args(),
                   {.balance_loss_coeff = 0.05}};
  routed.args.n_layers = 3;
  routed.args.q_lora_rank = 5;
  routed.args.n_routed_experts = 8;
  routed.args.n_shared_experts = 2;
  routed.args.n_activated_experts = 3;
  routed.args.n_expert_groups = 4;
  routed.args.n_limited_groups = 2;
  routed.args.score_func = ScoreFunction::sigmoid;
  routed.args.route_norm = true;
  routed.args.route_scale = 2.5;
  routed.args.mask = MaskType::document_causal;
  models.push_back(routed);

  TinyModel grouped{"softmax, 2 groups keep 1, route_norm, route_scale 1.5, no shared expert, documents, balance loss",
                    tiny_args(),
                    {.balance_loss_coeff = 0.1}};
  grouped.args.n_routed_experts = 6;
  grouped.args.n_shared_experts = 0;
  grouped.args.n_expert_groups = 2;
  grouped.args.n_limited_groups = 1;
  grouped.args.route_norm = true;
  grouped.args.route_scale = 1.5;
  grouped.args.mask = MaskType::document_causal;
  models.push_back(grouped);

  for (const TinyModel& model : models) validate(model.args);
  return models;
}

struct Batch {
  Tensor inputs;        // i32 [B, S]
  Tensor labels;        // i64 [B, S], some ignore_index
  Tensor document_ids;  // i32 [B, S], several documents per sequence; undefined for the causal mask
};

Batch tiny_batch(const ModelArgs& args, Rng& rng) {
  Batch batch;
  batch.inputs = random_uniform(Shape{kBatch, kSeq}, DType::i32, rng, 0, static_cast<double>(args.vocab_size));
  std::vector<double> labels =
      to_vector(random_uniform(Shape{kBatch, kSeq}, DType::i64, rng, 0, static_cast<double>(args.vocab_size)));
  labels[2] = labels[9] = labels[13] = -100;
  batch.labels = from_values(Shape{kBatch, kSeq}, DType::i64, labels);
  if (args.mask == MaskType::document_causal) {
    batch.document_ids = from_values(Shape{kBatch, kSeq}, DType::i32,
                                     {0, 0, 1, 1, 1, 2, 2,  //
                                      0, 0, 0, 0, 1, 1, 1});
  }
  return batch;
}

// ParameterStore::initialize, then: norm weights in [0.5, 1.5] (ones would hide a swapped norm input), router gates
// ×30 so router logits are O(1) and far apart (no selection flips under a finite-difference step), random expert biases
// (selection only; they must not be differentiated).
void initialize_for_gradient_check(Transformer& model, Rng& rng) {
  ParameterStore& parameters = model.parameters();
  parameters.initialize(7);
  for (const ParameterSpec& spec : parameters.specs()) {
    const Tensor param = parameters.param(spec.name);
    if (spec.init.kind == Initializer::Kind::ones)
      ops::convert(param, random_uniform(spec.shape, DType::f64, rng, 0.5, 1.5));
    if (spec.name.ends_with("router.gate")) ops::scale(param, 30.0);
  }
  for (const Tensor& bias : model.expert_biases()) {
    if (bias.defined()) ops::convert(bias, random_uniform(bias.shape(), DType::f64, rng, -0.02, 0.02));
  }
}

// loss_sum + balance_loss: the objective backward(record, 1, 1) differentiates.
double objective(Transformer& model, const Batch& batch, const TrainingOptions& options) {
  ModelRecord record;
  const ForwardResult result = model.forward(record, batch.inputs, batch.labels, batch.document_ids, options);
  return result.loss_sum + result.balance_loss;
}

}  // namespace

TEST_CASE("Transformer: gradients of every parameter match finite differences (f64)") {
  for (const TinyModel& tiny : tiny_models()) {
    INFO(tiny.name);
    Rng rng(11);
    Transformer model(tiny.args, DType::f64);
    initialize_for_gradient_check(model, rng);
    const Batch batch = tiny_batch(tiny.args, rng);

    ParameterStore& parameters = model.parameters();
    parameters.zero_grads();
    ModelRecord record;
    const ForwardResult result = model.forward(record, batch.inputs, batch.labels, batch.document_ids, tiny.options);
    CHECK(result.valid_targets == kTokens - 3);
    CHECK((tiny.options.balance_loss_coeff > 0.0) == (result.balance_loss > 0.0));
    model.backward(record, 1.0, 1.0, tiny.options);

    const auto forward = [&] { return from_values(Shape{}, DType::f64, {objective(model, batch, tiny.options)}); };
    const Tensor upstream = from_values(Shape{}, DType::f64, {1.0});
    for (const ParameterSpec& spec : parameters.specs()) {
      INFO("parameter ", spec.name);
      DSV3_CHECK_CLOSE(check_gradients(forward, upstream, {parameters.param(spec.name)}, {parameters.grad(spec.name)},
                                       {.tolerance = 1e-7, .step = 1e-6, .max_elements = 32}));
    }
  }
}

TEST_CASE("Transformer: backward accumulates into the gradients and scales the two losses separately") {
  const TinyModel tiny = tiny_models()[2];  // has the balance loss
  Rng rng(3);
  Transformer model(tiny.args, DType::f64);
  initialize_for_gradient_check(model, rng);
  const Batch batch = tiny_batch(tiny.args, rng);
  ParameterStore& parameters = model.parameters();
  const auto gradient = [&](double loss_scale, double balance_scale) {
    parameters.zero_grads();
    ModelRecord record;
    model.forward(record, batch.inputs, batch.labels, batch.document_ids, tiny.options);
    model.backward(record, loss_scale, balance_scale, tiny.options);
    return parameters.flat_grads().clone();
  };
  const Tensor loss_only = gradient(1.0, 0.0);
  const Tensor balance_only = gradient(0.0, 1.0);
  const Tensor mixed = gradient(0.5, 2.0);
  const Tensor expected = Tensor::zeros(mixed.shape(), DType::f64);
  ops::axpy(expected, 0.5, loss_only);
  ops::axpy(expected, 2.0, balance_only);
  DSV3_CHECK_CLOSE(compare(mixed, expected, 1e-12, 1e-12));
  CHECK(dot(balance_only, balance_only) > 0.0);

  // A second backward from the same record adds the same gradient again.
  parameters.zero_grads();
  ModelRecord record;
  model.forward(record, batch.inputs, batch.labels, batch.document_ids, tiny.options);
  model.backward(record, 0.5, 2.0, tiny.options);
  model.backward(record, 0.5, 2.0, tiny.options);
  ops::scale(expected, 2.0);
  DSV3_CHECK_CLOSE(compare(parameters.flat_grads(), expected, 1e-12, 1e-12));
}

TEST_CASE("Transformer: the debug model at init predicts about uniformly and counts top_k experts per token") {
  const ModelArgs args = model_flavor("debugmodel");
  Transformer model(args);
  model.parameters().initialize(1);
  Rng rng(5);
  constexpr std::int64_t batch = 2, seq = 32;
  const Tensor inputs = random_uniform(Shape{batch, seq}, DType::i32, rng, 0, static_cast<double>(args.vocab_size));
  const Tensor labels = random_uniform(Shape{batch, seq}, DType::i32, rng, 0, static_cast<double>(args.vocab_size));
  ModelRecord record;
  const ForwardResult result = model.forward(record, inputs, labels, Tensor{});
  CHECK(result.valid_targets == batch * seq);
  CHECK(result.balance_loss == 0.0);
  // Logits of std ≈ 1 at init (normed hidden state, output std dim^-0.5): cross-entropy ≈ ln V + 1/2.
  const double loss = result.loss_sum / static_cast<double>(result.valid_targets);
  const double uniform = std::log(static_cast<double>(args.vocab_size));
  MESSAGE("debug model loss at init ", loss, ", ln(vocab) = ", uniform);
  CHECK(loss > uniform - 0.1);
  CHECK(loss < uniform + 1.0);
  CHECK(model.logits(record).shape() == Shape{batch * seq, args.vocab_size});

  // Every token picks top_k experts in every MoE layer; counts add up over forwards until reset.
  const auto counted = [&](std::int64_t layer) {
    double sum = 0.0;
    for (const double count : to_vector(model.tokens_per_expert()[layer])) sum += count;
    return sum;
  };
  const double per_forward = static_cast<double>(batch * seq * args.n_activated_experts);
  for (std::int64_t layer = 0; layer < args.n_layers; ++layer) {
    INFO("layer ", layer);
    CHECK(model.tokens_per_expert()[layer].defined() == args.is_moe_layer(layer));
    CHECK(model.expert_biases()[layer].defined() == args.is_moe_layer(layer));
    if (args.is_moe_layer(layer)) CHECK(counted(layer) == per_forward);
  }
  model.forward(record, inputs, labels, Tensor{});
  CHECK(counted(args.n_layers - 1) == 2.0 * per_forward);
  model.reset_tokens_per_expert();
  CHECK(counted(args.n_layers - 1) == 0.0);
}

TEST_CASE("Transformer: bad batches are errors naming the argument") {
  ModelArgs args = tiny_args();
  args.mask = MaskType::document_causal;
  Transformer model(args, DType::f64);
  model.parameters().initialize(1);
  Rng rng(1);
  const Batch batch = tiny_batch(args, rng);
  ModelRecord record;
  CHECK_THROWS_WITH_AS(model.forward(record, batch.inputs, batch.labels, Tensor{}),
                       doctest::Contains("document_ids is required"), Error);
  CHECK_THROWS_WITH_AS(model.forward(record, batch.inputs, batch.labels, batch.document_ids.view(Shape{kTokens})),
                       doctest::Contains("document_ids is i32[14]"), Error);
  CHECK_THROWS_WITH_AS(model.forward(record, batch.inputs, batch.labels.view(Shape{kTokens}), batch.document_ids),
                       doctest::Contains("labels is"), Error);
  const Tensor too_long = Tensor::zeros(Shape{1, args.max_seq_len + 1}, DType::i32);
  CHECK_THROWS_WITH_AS(model.forward(record, too_long, too_long, too_long), doctest::Contains("max_seq_len"), Error);
  CHECK_THROWS_WITH_AS(model.backward(record, 1.0, 0.0), doctest::Contains("run forward first"), Error);
}
