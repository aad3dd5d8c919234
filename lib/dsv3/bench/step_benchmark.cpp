#include "dsv3/bench/step_benchmark.hpp"

#include "dsv3/core/timer.hpp"
#include "dsv3/model/model_record.hpp"
#include "dsv3/model/transformer.hpp"
#include "dsv3/ops/common.hpp"
#include "dsv3/train/optimizer.hpp"

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

namespace dsv3::bench {

namespace {

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

StepBenchmarkResult benchmark_training_step(const train::JobConfig& config, const StepBenchmarkOptions& options) {
  DSV3_CHECK(options.warmup_steps >= 0 && options.steps > 0, "step benchmark: {} warmup and {} timed steps",
             options.warmup_steps, options.steps);
  // Not validate_job_config: the benchmark reads no dataset, so the config's data need not exist here.
  const std::int64_t batch = config.training.local_batch_size;
  const std::int64_t seq_len = config.training.seq_len;
  DSV3_CHECK(batch > 0 && seq_len > 0,
             "step benchmark: training.local_batch_size = {} and training.seq_len = {} must "
             "be positive",
             batch, seq_len);
  model::ModelArgs args = train::model_args(config);
  if (options.layers > 0) {
    DSV3_CHECK(options.layers <= args.n_layers, "step benchmark: {} layers requested, the flavor has {}",
               options.layers, args.n_layers);
    args.n_layers = options.layers;
  }
  model::validate(args);

  model::Transformer transformer(args, DType::f32, options.device);
  transformer.parameters().initialize(static_cast<std::uint64_t>(config.training.seed));
  train::AdamW optimizer(transformer.parameters().flat_params(), transformer.parameters().flat_grads(),
                         {.beta1 = config.optimizer.beta1,
                          .beta2 = config.optimizer.beta2,
                          .eps = config.optimizer.eps,
                          .weight_decay = config.optimizer.weight_decay});

  // Random tokens, labels the next token of the same stream; one document per sequence.
  std::mt19937_64 rng(static_cast<std::uint64_t>(config.training.seed));
  std::uniform_int_distribution<std::int32_t> token(0, static_cast<std::int32_t>(args.vocab_size - 1));
  const Tensor inputs = Tensor::empty({batch, seq_len}, DType::i32);
  const Tensor labels = Tensor::empty({batch, seq_len}, DType::i32);
  const Tensor document_ids = Tensor::zeros({batch, seq_len}, DType::i32);
  for (std::int64_t row = 0; row < batch; ++row) {
    std::int32_t next = token(rng);
    for (std::int64_t i = 0; i < seq_len; ++i) {
      inputs.data<std::int32_t>()[row * seq_len + i] = next;
      next = token(rng);
      labels.data<std::int32_t>()[row * seq_len + i] = next;
    }
  }
  const Tensor mask_documents = args.mask == model::MaskType::document_causal ? document_ids : Tensor();
  const model::TrainingOptions training{.balance_loss_coeff = config.moe.balance_loss_coeff,
                                        .force_load_balance = config.moe.force_load_balance};

  model::ModelRecord record;
  std::vector<double> forward, backward, update;
  // Each phase ends with a synchronisation, so that its time is the GPU's (a no-op on the CPU).
  const auto finished = [&] { ops::synchronize(options.device); };
  StepBenchmarkResult result;
  for (int step = 0; step < options.warmup_steps + options.steps; ++step) {
    transformer.parameters().zero_grads();
    Timer timer;
    const model::ForwardResult loss = transformer.forward(record, inputs, labels, mask_documents, training);
    finished();
    const double forward_seconds = timer.seconds();
    timer.reset();
    transformer.backward(record, 1.0 / static_cast<double>(loss.valid_targets), 1.0, training);
    finished();
    const double backward_seconds = timer.seconds();
    timer.reset();
    train::clip_grad_norm(transformer.parameters().flat_grads(), config.training.max_norm);
    optimizer.step(config.optimizer.lr);
    finished();
    const double optimizer_seconds = timer.seconds();
    transformer.reset_tokens_per_expert();
    if (step >= options.warmup_steps) {
      forward.push_back(forward_seconds);
      backward.push_back(backward_seconds);
      update.push_back(optimizer_seconds);
    }
    result.loss = loss.loss_sum / static_cast<double>(loss.valid_targets);
  }
  result.tokens = batch * seq_len;
  result.forward_seconds = median(forward);
  result.backward_seconds = median(backward);
  result.optimizer_seconds = median(update);
  result.flops_per_token = model::training_flops_per_token(args, seq_len, /*causal=*/true);
  return result;
}

}  // namespace dsv3::bench
