// The Transformer: the blocks chained over the residual stream, the head and the loss (REFERENCE.md §2), forward
// into a ModelRecord and backward from it. The layers themselves live in attention.cpp, feed_forward.cpp and moe.cpp.
#include "dsv3/model/transformer.hpp"

#include "dsv3/model/model_record.hpp"
#include "dsv3/ops/elementwise.hpp"
#include "dsv3/ops/embedding.hpp"
#include "dsv3/ops/loss.hpp"
#include "dsv3/ops/matmul.hpp"
#include "dsv3/ops/norm.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dsv3::model {

struct Transformer::State {
  ModelArgs args;
  std::optional<ParameterStore> parameters;  // empty when the weights are bound to external storage
  DType dtype;
  Device device;
  UnitHooks* hooks = nullptr;
  ModelWeights weights;
  ModelWeights grads;                     // the same views over the gradient arena
  std::vector<Tensor> expert_biases;      // per layer: f32 [E] on the model's device; undefined for dense layers
  std::vector<Tensor> tokens_per_expert;  // per layer: i64 [E] on the host; undefined for dense layers
  Tensor rope_cos;                        // [max_seq_len, qk_rope_head_dim/2], built once for every batch
  Tensor rope_sin;
  // Backward's scratch, reused across micro-batches: every record shares it, as backward runs one at a time.
  Tensor dlogits;     // [T, V]
  Tensor d_residual;  // [T, D]: gradient of the residual stream, from the top block down
  Tensor d_normed;    // [T, D]: gradient of a norm output (the input of a branch)
  Tensor d_branch;    // [T, D]: a branch's share of d_residual

  State(const ModelArgs& model_args, DType dtype_, Device device_)
      : args(model_args),
        parameters(std::in_place, parameter_specs(model_args), dtype_, device_),
        dtype(dtype_),
        device(device_) {
    weights = bind_weights(args, [&](const std::string& name) { return parameters->param(name); });
    grads = bind_weights(args, [&](const std::string& name) { return parameters->grad(name); });
    allocate_model_state();
  }
  State(const ModelArgs& model_args, const ExternalParameters& external, DType dtype_, Device device_)
      : args(model_args), dtype(dtype_), device(device_) {
    weights = bind_weights(args, external.params);
    grads = bind_weights(args, external.grads);
    allocate_model_state();
  }

  // Expert biases, token counts and rope tables: what the model holds besides its parameters.
  void allocate_model_state() {
    expert_biases.resize(static_cast<std::size_t>(args.n_layers));
    tokens_per_expert.resize(static_cast<std::size_t>(args.n_layers));
    for (std::int64_t layer = 0; layer < args.n_layers; ++layer) {
      if (!args.is_moe_layer(layer)) continue;
      expert_biases[layer] = Tensor::zeros(Shape{args.n_routed_experts}, DType::f32, device);
      tokens_per_expert[layer] = Tensor::zeros(Shape{args.n_routed_experts}, DType::i64);
    }
    BatchContext tables;
    make_rope_tables(tables, args, dtype, device);
    rope_cos = tables.rope_cos;
    rope_sin = tables.rope_sin;
  }

  // An activation or scratch tensor of the model's dtype and device, (re)allocated only when its shape changes.
  const Tensor& ensure(Tensor& slot, const Shape& shape) const { return ensure_tensor(slot, shape, dtype, device); }
};

namespace {

MoeOptions moe_options(const TrainingOptions& options) {
  return {.balance_loss_coeff = options.balance_loss_coeff, .force_load_balance = options.force_load_balance};
}

// The value of a rank-0 float tensor, wherever it lives.
double scalar_value(const Tensor& scalar) {
  const Tensor value = Tensor::empty(Shape{}, DType::f64);
  ops::convert(value, scalar.device() == Device::cpu ? scalar : scalar.to(Device::cpu));
  return *value.data<double>();
}

// Checks the batch and fills record.batch: positions 0..S−1 in every sequence (dsv3 rotates by the position in the
// packed sequence; the document mask alone separates documents), the document ids, the model's rope tables.
void prepare_batch(ModelRecord& record, const ModelArgs& args, const Tensor& inputs, const Tensor& labels,
                   const Tensor& document_ids, const Tensor& rope_cos, const Tensor& rope_sin, Device device) {
  const char* op = "Transformer::forward";
  DSV3_CHECK(inputs.defined() && inputs.rank() == 2 && (inputs.dtype() == DType::i32 || inputs.dtype() == DType::i64),
             "{}: inputs is {}, expected token ids i32 or i64 [batch, seq_len]", op,
             inputs.defined() ? inputs.describe() : "undefined");
  const std::int64_t batch = inputs.size(0), seq_len = inputs.size(1);
  DSV3_CHECK(seq_len <= args.max_seq_len, "{}: inputs is {}: seq_len {} exceeds the model's max_seq_len {}", op,
             inputs.describe(), seq_len, args.max_seq_len);
  DSV3_CHECK(labels.defined() && labels.shape() == inputs.shape() &&
                 (labels.dtype() == DType::i32 || labels.dtype() == DType::i64),
             "{}: labels is {}, expected i32 or i64 {} like inputs", op,
             labels.defined() ? labels.describe() : "undefined", inputs.shape());
  BatchContext& context = record.batch;
  context.batch = batch;
  context.seq_len = seq_len;
  const std::int64_t tokens = context.tokens();
  if (args.mask == MaskType::document_causal) {
    DSV3_CHECK(document_ids.defined(),
               "{}: document_ids is required when the model's mask is document_causal (got none for inputs {})", op,
               inputs.describe());
    DSV3_CHECK(document_ids.shape() == inputs.shape() && document_ids.dtype() == DType::i32,
               "{}: document_ids is {}, expected i32 {} like inputs", op, document_ids.describe(), inputs.shape());
    context.document_ids = document_ids.to(device);  // a copy, as inputs and labels below
  } else {
    context.document_ids = Tensor{};  // the causal mask ignores documents
  }
  const Tensor positions = Tensor::empty(Shape{tokens}, DType::i32);  // [T] on the host
  for (std::int64_t t = 0; t < tokens; ++t) positions.data<std::int32_t>()[t] = static_cast<std::int32_t>(t % seq_len);
  context.positions = positions.to(device);
  context.rope_cos = rope_cos;
  context.rope_sin = rope_sin;
  // The record keeps its own copies (Tensor::to copies): the caller may refill its buffers before backward.
  record.inputs = inputs.view(Shape{tokens}).to(device);
  record.labels = labels.view(Shape{tokens}).to(device);
}

// The input of block `layer`: the embedding for the first, the previous block's output after that.
const Tensor& block_input(const ModelRecord& record, std::size_t layer) {
  return layer == 0 ? record.embedded : record.layers[layer - 1].out;
}

}  // namespace

Transformer::Transformer(const ModelArgs& args, DType dtype, Device device) {
  validate(args);
  state_ = std::make_shared<State>(args, dtype, device);
}

Transformer::Transformer(const ModelArgs& args, const ExternalParameters& external, DType dtype, Device device) {
  validate(args);
  state_ = std::make_shared<State>(args, external, dtype, device);
}

const ModelArgs& Transformer::args() const { return state_->args; }
ParameterStore& Transformer::parameters() {
  DSV3_CHECK(state_->parameters.has_value(),
             "Transformer::parameters: this model's parameters are held outside it (data-parallel shards)");
  return *state_->parameters;
}
void Transformer::set_unit_hooks(UnitHooks* hooks) { state_->hooks = hooks; }
const ModelWeights& Transformer::weights() const { return state_->weights; }
const ModelWeights& Transformer::grads() const { return state_->grads; }
const std::vector<Tensor>& Transformer::expert_biases() const { return state_->expert_biases; }
const std::vector<Tensor>& Transformer::tokens_per_expert() const { return state_->tokens_per_expert; }

void Transformer::reset_tokens_per_expert() {
  for (const Tensor& counts : state_->tokens_per_expert) {
    if (counts.defined()) counts.zero();
  }
}

const Tensor& Transformer::logits(const ModelRecord& record) const {
  DSV3_CHECK(record.logits.defined(), "Transformer::logits: the record is empty; run forward first");
  return record.logits;
}

ForwardResult Transformer::forward(ModelRecord& record, const Tensor& inputs, const Tensor& labels,
                                   const Tensor& document_ids, const TrainingOptions& options) {
  State& s = *state_;
  const ModelArgs& args = s.args;
  prepare_batch(record, args, inputs, labels, document_ids, s.rope_cos, s.rope_sin, s.device);
  const BatchContext& batch = record.batch;
  const std::int64_t tokens = batch.tokens();
  const auto activation = [&](Tensor& slot, const Shape& shape) -> const Tensor& { return s.ensure(slot, shape); };
  const Shape hidden{tokens, args.dim};

  const std::int64_t head_unit = unit_count(args) - 1;
  ForwardResult result;
  if (s.hooks) s.hooks->before_forward(0);
  ops::embedding_forward(activation(record.embedded, hidden), s.weights.tok_embeddings, record.inputs);
  if (s.hooks) s.hooks->after_forward(0);
  record.layers.resize(static_cast<std::size_t>(args.n_layers));
  for (std::size_t layer = 0; layer < record.layers.size(); ++layer) {
    const auto unit = static_cast<std::int64_t>(layer) + 1;
    if (s.hooks) s.hooks->before_forward(unit);
    BlockRecord& block = record.layers[layer];
    const BlockWeights& w = s.weights.layers[layer];
    const Tensor& x = block_input(record, layer);  // [T, D]
    // h = x + attention(attention_norm(x)): attention writes into h, then the residual is added in place.
    ops::rmsnorm_forward(activation(block.attention_norm_out, hidden), activation(block.attention_norm_rstd, {tokens}),
                         x, w.attention_norm, args.norm_eps);
    const Tensor& h = activation(block.h, hidden);
    attention_forward(h, block.attention, block.attention_norm_out, w.attention, args, batch);
    ops::add(h, h, x);
    // out = h + ffn(ffn_norm(h)), dense or MoE, the same way.
    ops::rmsnorm_forward(activation(block.ffn_norm_out, hidden), activation(block.ffn_norm_rstd, {tokens}), h,
                         w.ffn_norm, args.norm_eps);
    const Tensor& out = activation(block.out, hidden);
    if (w.moe_layer) {
      result.balance_loss += moe_forward(out, block.moe, block.ffn_norm_out, w.moe, s.expert_biases[layer],
                                         s.tokens_per_expert[layer], args, batch, moe_options(options));
    } else {
      feed_forward_forward(out, block.feed_forward, block.ffn_norm_out, w.feed_forward);
    }
    ops::add(out, out, h);
    if (s.hooks) s.hooks->after_forward(unit);
  }

  if (s.hooks) s.hooks->before_forward(head_unit);
  const Tensor& top = block_input(record, record.layers.size());  // [T, D]
  ops::rmsnorm_forward(activation(record.norm_out, hidden), activation(record.norm_rstd, {tokens}), top, s.weights.norm,
                       args.norm_eps);
  ops::linear_forward(activation(record.logits, {tokens, args.vocab_size}), record.norm_out, s.weights.output);
  const Tensor loss = Tensor::empty(Shape{}, s.dtype, s.device);  // rank 0: Σ over valid targets
  ops::cross_entropy_forward(loss, activation(record.lse, {tokens}), record.logits, record.labels);
  if (s.hooks) s.hooks->after_forward(head_unit);
  result.loss_sum = scalar_value(loss);
  result.valid_targets = ops::count_valid_targets(labels.device() == Device::cpu ? labels : labels.to(Device::cpu));
  return result;
}

void Transformer::backward(ModelRecord& record, double loss_scale, double balance_scale,
                           const TrainingOptions& options) {
  DSV3_CHECK(record.logits.defined() && record.layers.size() == static_cast<std::size_t>(state_->args.n_layers),
             "Transformer::backward: the record is empty; run forward first");
  State& s = *state_;
  const ModelArgs& args = s.args;
  const BatchContext& batch = record.batch;
  const std::int64_t tokens = batch.tokens();
  const Shape hidden{tokens, args.dim};
  const Tensor& dlogits = s.ensure(s.dlogits, {tokens, args.vocab_size});
  const Tensor& d_residual = s.ensure(s.d_residual, hidden);
  const Tensor& d_normed = s.ensure(s.d_normed, hidden);
  const Tensor& d_branch = s.ensure(s.d_branch, hidden);

  // Head: loss_scale · Σ cross-entropy → logits → final norm → the top block's output.
  const std::int64_t head_unit = unit_count(args) - 1;
  if (s.hooks) s.hooks->before_backward(head_unit);
  ops::cross_entropy_backward(dlogits, record.logits, record.lse, record.labels, loss_scale);
  ops::linear_backward(d_normed, s.grads.output, dlogits, record.norm_out, s.weights.output);
  ops::rmsnorm_backward(d_residual, s.grads.norm, d_normed, block_input(record, record.layers.size()), s.weights.norm,
                        record.norm_rstd);
  if (s.hooks) s.hooks->after_backward(head_unit);

  // Blocks top down. d_residual enters as d(out) and leaves as d(x): each branch adds its share through its norm.
  for (std::size_t layer = record.layers.size(); layer-- > 0;) {
    const auto unit = static_cast<std::int64_t>(layer) + 1;
    if (s.hooks) s.hooks->before_backward(unit);
    const BlockRecord& block = record.layers[layer];
    const BlockWeights& w = s.weights.layers[layer];
    const BlockWeights& g = s.grads.layers[layer];
    const Tensor& x = block_input(record, layer);
    if (w.moe_layer) {
      moe_backward(d_normed, d_residual, block.moe, block.ffn_norm_out, w.moe, g.moe, args, batch, balance_scale,
                   moe_options(options));
    } else {
      feed_forward_backward(d_normed, d_residual, block.feed_forward, block.ffn_norm_out, w.feed_forward,
                            g.feed_forward);
    }
    ops::rmsnorm_backward(d_branch, g.ffn_norm, d_normed, block.h, w.ffn_norm, block.ffn_norm_rstd);
    ops::add(d_residual, d_residual, d_branch);  // d(h)
    attention_backward(d_normed, d_residual, block.attention, block.attention_norm_out, w.attention, g.attention, args,
                       batch);
    ops::rmsnorm_backward(d_branch, g.attention_norm, d_normed, x, w.attention_norm, block.attention_norm_rstd);
    ops::add(d_residual, d_residual, d_branch);  // d(x)
    if (s.hooks) s.hooks->after_backward(unit);
  }
  if (s.hooks) s.hooks->before_backward(0);
  ops::embedding_backward(s.grads.tok_embeddings, d_residual, record.inputs);
  if (s.hooks) s.hooks->after_backward(0);
}

}  // namespace dsv3::model
