#include "dsv3/train/evaluation.hpp"

#include "dsv3/core/error.hpp"
#include "dsv3/model/model_record.hpp"

#include <cmath>

namespace dsv3::train {

std::unique_ptr<model::Transformer> load_model(const std::filesystem::path& path, std::int64_t max_seq_len,
                                               Device device) {
  ModelCheckpointReader reader(path);
  model::ModelArgs args = reader.args();
  args.max_seq_len = max_seq_len;
  auto transformer = std::make_unique<model::Transformer>(args, DType::f32, device);
  model::ParameterStore& parameters = transformer->parameters();
  for (const model::ParameterSpec& spec : parameters.specs()) {
    const Tensor param = parameters.param(spec.name);
    param.copy_from(reader.read(spec.name, 0, param.numel()).view(param.shape()));
  }
  for (std::int64_t layer = 0; layer < args.n_layers; ++layer) {
    const Tensor& bias = transformer->expert_biases()[static_cast<std::size_t>(layer)];
    if (!bias.defined()) continue;
    bias.copy_from(reader.read(expert_bias_name(layer), 0, bias.numel()));
  }
  reader.verify(MPI_COMM_SELF);
  return transformer;
}

double Evaluation::perplexity() const { return std::exp(loss); }

Evaluation evaluate(model::Transformer& model, const std::vector<std::vector<std::int32_t>>& sequences) {
  DSV3_CHECK(!sequences.empty(), "evaluate: no token sequence");
  const auto batch = static_cast<std::int64_t>(sequences.size());
  const auto length = static_cast<std::int64_t>(sequences[0].size());
  DSV3_CHECK(length >= 2, "evaluate: a sequence needs at least 2 tokens (one target)");
  const Tensor inputs = Tensor::empty(Shape{batch, length}, DType::i32);
  const Tensor labels = Tensor::empty(Shape{batch, length}, DType::i32);
  const std::int64_t vocab = model.args().vocab_size;
  for (std::int64_t b = 0; b < batch; ++b) {
    const auto& tokens = sequences[static_cast<std::size_t>(b)];
    DSV3_CHECK(static_cast<std::int64_t>(tokens.size()) == length,
               "evaluate: sequence {} has {} tokens but sequence 0 has {}: sequences of one batch have one length", b,
               tokens.size(), length);
    for (std::int64_t s = 0; s < length; ++s) {
      const std::int32_t token = tokens[static_cast<std::size_t>(s)];
      DSV3_CHECK(token >= 0 && token < vocab, "evaluate: sequence {}, position {}: token {} outside the vocabulary [0, {})",
                 b, s, token, vocab);
      inputs.data<std::int32_t>()[b * length + s] = token;
      labels.data<std::int32_t>()[b * length + s] =
          s + 1 < length ? tokens[static_cast<std::size_t>(s + 1)] : -100;  // the last position has no target
    }
  }
  // Document ids for a document-causal model: the whole sequence is one document (as transformers sees it).
  const Tensor document_ids =
      model.args().mask == model::MaskType::document_causal ? Tensor::zeros(Shape{batch, length}, DType::i32) : Tensor();
  model::ModelRecord record;
  const model::ForwardResult result = model.forward(record, inputs, labels, document_ids);
  Evaluation evaluation;
  evaluation.logits = model.logits(record).to(Device::cpu).view(Shape{batch, length, vocab});
  evaluation.targets = result.valid_targets;
  evaluation.loss = result.loss_sum / static_cast<double>(result.valid_targets);
  return evaluation;
}

}  // namespace dsv3::train
