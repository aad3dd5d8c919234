#include "dsv3/train/trainer.hpp"

#include "dsv3/core/error.hpp"
#include "dsv3/core/timer.hpp"
#include "dsv3/data/dataloader.hpp"
#include "dsv3/data/tokenizer.hpp"
#include "dsv3/io/token_dataset.hpp"
#include "dsv3/model/model_record.hpp"
#include "dsv3/model/moe.hpp"
#include "dsv3/ops/loss.hpp"
#include "dsv3/train/lr_schedule.hpp"
#include "dsv3/train/metrics.hpp"
#include "dsv3/train/optimizer.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <ctime>
#include <optional>
#include <vector>

namespace dsv3::train {

namespace {

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return MPI_FLOAT;
    case DType::f64:
      return MPI_DOUBLE;
    case DType::i64:
      return MPI_INT64_T;
    case DType::i32:
      return MPI_INT32_T;
    default:
      fail("all-reduce: no MPI type for {}", dtype_name(dtype));
  }
}

// In-place sum over the ranks of `comm`, in pieces that fit MPI's int counts. (The comm layer of a later issue
// replaces this with its asynchronous, bucketed all-reduce.)
void all_reduce_sum(void* data, std::int64_t count, MPI_Datatype type, MPI_Comm comm) {
  int type_size = 0;
  MPI_Type_size(type, &type_size);
  auto* bytes = static_cast<char*>(data);
  for (std::int64_t done = 0; done < count;) {
    const int piece = static_cast<int>(std::min<std::int64_t>(count - done, INT_MAX));
    MPI_Allreduce(MPI_IN_PLACE, bytes + done * type_size, piece, type, MPI_SUM, comm);
    done += piece;
  }
}

void all_reduce_sum(const Tensor& tensor, MPI_Comm comm) {
  DSV3_CHECK(tensor.device() == Device::cpu, "all-reduce: {} is not on the CPU (NCCL arrives with the comm layer)",
             tensor.describe());
  all_reduce_sum(tensor.raw(), tensor.numel(), mpi_type(tensor.dtype()), comm);
}

// Aux-loss-free balancing: every MoE layer's bias moves with the token counts of the whole step, summed over the
// ranks in one all-reduce.
void update_expert_biases(model::Transformer& transformer, double coeff, MPI_Comm comm) {
  const std::vector<Tensor>& layers = transformer.tokens_per_expert();
  std::vector<std::int64_t> counts;
  for (const Tensor& layer : layers) {
    if (layer.defined())
      counts.insert(counts.end(), layer.data<std::int64_t>(), layer.data<std::int64_t>() + layer.numel());
  }
  all_reduce_sum(counts.data(), static_cast<std::int64_t>(counts.size()), MPI_INT64_T, comm);
  const std::int64_t* next = counts.data();
  for (std::size_t layer = 0; layer < layers.size(); ++layer) {
    if (!layers[layer].defined()) continue;
    std::copy_n(next, layers[layer].numel(), layers[layer].data<std::int64_t>());
    next += layers[layer].numel();
    model::update_expert_bias(transformer.expert_biases()[layer], layers[layer], coeff);
  }
}

std::string millions(std::int64_t count) { return fmt::format("{:.1f}M", static_cast<double>(count) / 1e6); }

// <dump_folder>/runs/<local start time>, with a suffix when a run started in the same second.
std::filesystem::path new_run_folder(const std::string& dump_folder) {
  const std::filesystem::path base =
      std::filesystem::path(dump_folder) / "runs" / fmt::format("{:%Y%m%d-%H%M%S}", fmt::localtime(std::time(nullptr)));
  std::filesystem::path folder = base;
  for (int suffix = 1; std::filesystem::exists(folder); ++suffix) folder = fmt::format("{}-{}", base.string(), suffix);
  std::filesystem::create_directories(folder);
  return folder;
}

}  // namespace

double unigram_entropy(const std::filesystem::path& path, std::int64_t max_tokens) {
  const io::TokenDataset dataset = io::TokenDataset::open(path);
  std::vector<std::int64_t> counts(static_cast<std::size_t>(dataset.metadata().tokenizer.vocab_size), 0);
  const std::int64_t total = std::min(dataset.n_tokens(), max_tokens);
  std::vector<std::int32_t> chunk(1 << 20);
  for (std::int64_t begin = 0; begin < total; begin += static_cast<std::int64_t>(chunk.size())) {
    const auto size = static_cast<std::size_t>(std::min<std::int64_t>(total - begin, chunk.size()));
    dataset.read_tokens(begin, std::span(chunk.data(), size));  // ids are checked against the vocabulary
    for (std::size_t i = 0; i < size; ++i) ++counts[static_cast<std::size_t>(chunk[i])];
  }
  double entropy = 0.0;
  for (const std::int64_t count : counts) {
    if (count == 0) continue;
    const double p = static_cast<double>(count) / static_cast<double>(total);
    entropy -= p * std::log(p);
  }
  return entropy;
}

struct Trainer::State {
  JobConfig config;
  RunLayout layout;
  MPI_Comm comm;
  int rank = 0;
  model::ModelArgs args;
  model::TrainingOptions options;
  std::optional<data::Tokenizer> tokenizer;
  std::optional<data::DocumentEncoder> encoder;
  data::DataLoader train_loader;
  std::optional<data::DataLoader> validation_loader;
  data::DataLoaderState validation_start;
  std::int64_t validation_batches = 0;
  model::Transformer model;
  model::ModelRecord record;
  AdamW optimizer;
  LrSchedule schedule;

  State(const JobConfig& config_, const RunLayout& layout_, const model::ModelArgs& args_, MPI_Comm comm_, DType dtype);

  // Training data is shuffled; validation batches are taken in order (the same ones every time anyway).
  data::DataLoaderOptions loader_options(const std::string& path, double validation_fraction, data::Split split,
                                         bool shuffle) const {
    data::DataLoaderOptions options;
    options.inputs = {path};
    options.batch_size = config.training.local_batch_size;
    options.seq_len = config.training.seq_len;
    MPI_Comm_rank(comm, &options.dp_rank);
    MPI_Comm_size(comm, &options.dp_size);
    options.seed = static_cast<std::uint64_t>(config.training.seed);
    options.shuffle = shuffle;
    options.validation_fraction = validation_fraction;
    options.split = split;
    return options;
  }

  const Tensor& document_ids(const data::Batch& batch) const {
    static const Tensor undefined;
    return args.mask == model::MaskType::document_causal ? batch.document_ids : undefined;
  }
};

namespace {

const data::DocumentEncoder* optional_pointer(const std::optional<data::DocumentEncoder>& encoder) {
  return encoder ? &*encoder : nullptr;
}

std::optional<data::Tokenizer> load_tokenizer(const JobConfig& config) {
  const std::filesystem::path path = tokenizer_file(config);
  if (path.empty()) return std::nullopt;
  return data::Tokenizer::from_file(path);
}

}  // namespace

Trainer::State::State(const JobConfig& config_, const RunLayout& layout_, const model::ModelArgs& args_, MPI_Comm comm_,
                      DType dtype)
    : config(config_),
      layout(layout_),
      comm(comm_),
      args(args_),
      options{.balance_loss_coeff = config_.moe.balance_loss_coeff,
              .force_load_balance = config_.moe.force_load_balance},
      tokenizer(load_tokenizer(config_)),
      encoder(tokenizer ? std::optional(data::DocumentEncoder::from_tokenizer(*tokenizer)) : std::nullopt),
      train_loader(loader_options(config_.training.dataset_path,
                                  config_.validation.enable && config_.validation.dataset_path.empty()
                                      ? config_.validation.holdout_fraction
                                      : 0.0,
                                  data::Split::training, true),
                   optional_pointer(encoder)),
      model(args_, dtype),
      optimizer(model.parameters().flat_params(), model.parameters().flat_grads(),
                {.beta1 = config_.optimizer.beta1,
                 .beta2 = config_.optimizer.beta2,
                 .eps = config_.optimizer.eps,
                 .weight_decay = config_.optimizer.weight_decay}),
      schedule({.training_steps = config_.training.steps,
                .warmup_steps = config_.lr_scheduler.warmup_steps,
                .decay_ratio = config_.lr_scheduler.decay_ratio,
                .decay_type = parse_decay_type(config_.lr_scheduler.decay_type),
                .min_lr_factor = config_.lr_scheduler.min_lr_factor}) {
  MPI_Comm_rank(comm, &rank);
  const io::TokenizerIdentity& data_tokenizer = train_loader.tokenizer();
  DSV3_CHECK(data_tokenizer.vocab_size <= args.vocab_size,
             "training.dataset_path = '{}' holds ids of a tokenizer with {} tokens, more than the {} of "
             "model.flavor = '{}'",
             config.training.dataset_path, data_tokenizer.vocab_size, args.vocab_size, config.model.flavor);
  if (config.validation.enable) {
    const bool holdout = config.validation.dataset_path.empty();
    validation_loader.emplace(loader_options(holdout ? config.training.dataset_path : config.validation.dataset_path,
                                             holdout ? config.validation.holdout_fraction : 0.0,
                                             holdout ? data::Split::validation : data::Split::training, false),
                              optional_pointer(encoder));
    DSV3_CHECK(validation_loader->tokenizer() == data_tokenizer,
               "validation.dataset_path = '{}' was made with another tokenizer ({}) than training.dataset_path ({})",
               config.validation.dataset_path, validation_loader->tokenizer().describe(), data_tokenizer.describe());
    validation_start = validation_loader->state();
    const std::int64_t sequences_per_batch = config.training.local_batch_size * layout.data_parallel_degree;
    validation_batches = config.validation.steps > 0 ? config.validation.steps
                                                     : validation_loader->windows_per_epoch() / sequences_per_batch;
    DSV3_CHECK(validation_batches > 0,
               "validation: the validation split has {} sequences, fewer than one batch of training.local_batch_size "
               "× data-parallel degree = {} (raise validation.holdout_fraction or give validation.steps)",
               validation_loader->windows_per_epoch(), sequences_per_batch);
  }
  model.parameters().initialize(static_cast<std::uint64_t>(config.training.seed));
}

Trainer::Trainer(const JobConfig& config, MPI_Comm comm) : Trainer(config, model_args(config), comm) {}

Trainer::Trainer(const JobConfig& config, const model::ModelArgs& args, MPI_Comm comm, DType dtype) {
  int world_size = 1;
  MPI_Comm_size(comm, &world_size);
  const RunLayout layout = validate_job_config(config, world_size);
  model::ModelArgs trained = args;
  trained.load_balance_coeff = config.moe.load_balance_coeff;  // [moe] applies to any model, as to the flavors
  model::validate(trained);
  DSV3_CHECK(trained.max_seq_len >= config.training.seq_len, "training.seq_len = {} exceeds the model's max_seq_len {}",
             config.training.seq_len, trained.max_seq_len);
  state_ = std::make_unique<State>(config, layout, trained, comm, dtype);
}

Trainer::~Trainer() = default;

std::int64_t Trainer::steps_taken() const { return state_->optimizer.steps_taken(); }
model::Transformer& Trainer::model() { return state_->model; }

StepResult Trainer::train_step() {
  State& s = *state_;
  Timer timer;
  const std::int64_t step = s.optimizer.steps_taken();
  DSV3_CHECK(step < s.config.training.steps, "train_step: all training.steps = {} steps are taken",
             s.config.training.steps);

  // The micro-batches first: every backward scales by the global count of valid targets.
  std::vector<data::Batch> micro_batches;
  std::int64_t valid_targets = 0;
  for (std::int64_t i = 0; i < s.layout.gradient_accumulation_steps; ++i) {
    micro_batches.push_back(s.train_loader.next());
    valid_targets += ops::count_valid_targets(micro_batches.back().labels);
  }
  all_reduce_sum(&valid_targets, 1, MPI_INT64_T, s.comm);
  DSV3_CHECK(valid_targets > 0, "step {}: the global batch has no valid targets (every label is {})", step + 1,
             ops::kIgnoreIndex);
  const double loss_scale = 1.0 / static_cast<double>(valid_targets);
  // A micro-batch's balance loss is summed over its sequences; the objective takes the mean over the step's.
  const double balance_scale = 1.0 / static_cast<double>(s.layout.global_batch_size);

  s.model.parameters().zero_grads();
  double sums[2] = {0.0, 0.0};  // loss, balance loss
  for (const data::Batch& batch : micro_batches) {
    const model::ForwardResult result =
        s.model.forward(s.record, batch.inputs, batch.labels, s.document_ids(batch), s.options);
    s.model.backward(s.record, loss_scale, balance_scale, s.options);
    sums[0] += result.loss_sum;
    sums[1] += result.balance_loss;
  }

  all_reduce_sum(s.model.parameters().flat_grads(), s.comm);
  all_reduce_sum(sums, 2, MPI_DOUBLE, s.comm);
  const double loss = sums[0] * loss_scale;
  DSV3_CHECK(std::isfinite(loss), "step {}: the loss is {}: training diverged (try a lower optimizer.lr)", step + 1,
             loss);

  StepResult result;
  result.step = step + 1;
  result.loss = loss;
  result.balance_loss = sums[1] * balance_scale;
  result.valid_targets = valid_targets;
  result.grad_norm = clip_grad_norm(s.model.parameters().flat_grads(), s.config.training.max_norm);
  result.lr = s.config.optimizer.lr * s.schedule.factor(step);
  s.optimizer.step(result.lr);

  if (s.args.load_balance_coeff > 0.0) update_expert_biases(s.model, s.args.load_balance_coeff, s.comm);
  s.model.reset_tokens_per_expert();
  result.seconds = timer.seconds();
  return result;
}

ValidationResult Trainer::validate() {
  State& s = *state_;
  DSV3_CHECK(s.validation_loader.has_value(), "validate: validation.enable is false");
  Timer timer;
  s.validation_loader->restore(s.validation_start);
  double loss_sum = 0.0;
  std::int64_t targets = 0;
  for (std::int64_t i = 0; i < s.validation_batches; ++i) {
    const data::Batch batch = s.validation_loader->next();
    const model::ForwardResult result =
        s.model.forward(s.record, batch.inputs, batch.labels, s.document_ids(batch), s.options);
    loss_sum += result.loss_sum;
    targets += result.valid_targets;
  }
  // Held-out tokens must not steer the expert biases.
  s.model.reset_tokens_per_expert();
  all_reduce_sum(&loss_sum, 1, MPI_DOUBLE, s.comm);
  all_reduce_sum(&targets, 1, MPI_INT64_T, s.comm);
  return {loss_sum / static_cast<double>(std::max<std::int64_t>(targets, 1)), targets, timer.seconds()};
}

std::filesystem::path Trainer::train(const DevicePeak& peak) {
  State& s = *state_;
  const JobConfig& c = s.config;
  const bool printing = s.rank == 0;
  const model::ParameterCounts parameters = model::count_parameters(s.args);
  constexpr bool kCausalFlops = true;
  const double flops_per_token = model::training_flops_per_token(s.args, c.training.seq_len, kCausalFlops);
  const std::int64_t tokens_per_step = s.layout.global_batch_size * c.training.seq_len;
  const double tokens_per_step_per_device = static_cast<double>(tokens_per_step) / s.layout.data_parallel_degree;

  RunMetrics run;
  run.description = c.job.description;
  run.flavor = c.model.flavor;
  run.parameters = parameters.total;
  run.active_parameters = parameters.active;
  run.ranks = s.layout.data_parallel_degree;
  run.tokens_per_step = tokens_per_step;
  run.steps = c.training.steps;
  run.flops_per_token = flops_per_token;
  run.causal_flops = kCausalFlops;
  run.peak_tflops = peak.tflops;
  run.unigram_entropy = std::nan("");

  std::filesystem::path run_folder;
  std::optional<MetricsFile> metrics_file;
  if (printing) {
    const auto& dataset = c.training.dataset_path;
    const std::string extension = std::filesystem::path(dataset).extension().string();
    if (extension == ".h5" || extension == ".hdf5") run.unigram_entropy = unigram_entropy(dataset, 1LL << 28);
    run_folder = new_run_folder(c.job.dump_folder);
    metrics_file.emplace(run_folder / "metrics.jsonl");
    std::ofstream(run_folder / "config.toml") << to_toml(c);
    metrics_file->write(to_json_line(run));

    if (c.job.print_config) fmt::print("{}\n", to_toml(c));
    if (!c.job.description.empty()) fmt::print("{}\n", c.job.description);
    fmt::print("model: {} ({}), {} parameters, {} active per token, {} attention\n", c.model.flavor, c.model.name,
               millions(parameters.total), millions(parameters.active),
               s.args.mask == model::MaskType::causal ? "causal" : "document-causal");
    fmt::print("ranks: {} data-parallel (replicated parameters, gradients all-reduced)\n",
               s.layout.data_parallel_degree);
    if (c.parallelism.data_parallel_shard_degree != 1 && s.layout.data_parallel_degree > 1) {
      fmt::print(
          "  note: FSDP sharding is not built yet; data_parallel_shard_degree runs as replicated data "
          "parallelism (the same updates, more memory per rank)\n");
    }
    if (c.activation_checkpoint.mode != "none") {
      fmt::print("  note: activation_checkpoint.mode = {} is not built yet; every activation is kept\n",
                 c.activation_checkpoint.mode);
    }
    fmt::print(
        "batch: {} sequences × {} tokens = {} tokens per step: {} sequences per rank per micro-batch × {} "
        "rank(s) × {} micro-batch(es)\n",
        s.layout.global_batch_size, c.training.seq_len, tokens_per_step, c.training.local_batch_size,
        s.layout.data_parallel_degree, s.layout.gradient_accumulation_steps);
    fmt::print("data: {}\n", s.train_loader.describe());
    if (s.validation_loader) {
      fmt::print("validation: {} batches every {} steps from {}\n", s.validation_batches, c.validation.freq,
                 s.validation_loader->describe());
    }
    if (std::isfinite(run.unigram_entropy)) {
      fmt::print(
          "unigram entropy of the training data: {:.4f} nats/token (the loss of the best model that ignores "
          "context)\n",
          run.unigram_entropy);
    }
    fmt::print(
        "optimizer: AdamW lr {:g}, betas ({:g}, {:g}), eps {:g}, weight decay {:g}; warmup {} steps, {} decay "
        "over {} steps to {:g} × lr; clipping at global norm {:g}\n",
        c.optimizer.lr, c.optimizer.beta1, c.optimizer.beta2, c.optimizer.eps, c.optimizer.weight_decay,
        s.schedule.warmup_steps(), c.lr_scheduler.decay_type, s.schedule.decay_steps(), c.lr_scheduler.min_lr_factor,
        c.training.max_norm);
    // At seq_len 0 the attention term vanishes: what remains is 6 × the active matmul parameters.
    fmt::print(
        "FLOPs per token: 6 × {} active matmul parameters (output head included, embedding excluded) + 6 × "
        "layers × heads × (qk_head_dim + v_head_dim) × seq_len / 2 (causal attention) = {:.4g} GFLOP\n",
        millions(static_cast<std::int64_t>(model::training_flops_per_token(s.args, 0, kCausalFlops) / 6.0)),
        flops_per_token / 1e9);
    fmt::print("peak per rank: {:.4g} TFLOP/s ({})\n", peak.tflops, peak.source);
    fmt::print("metrics: {}\n", metrics_file->path().string());
    std::fflush(stdout);
  }

  Timer run_timer;
  const std::int64_t first_step = s.optimizer.steps_taken();
  std::int64_t window_steps = 0;
  double window_seconds = 0.0;
  while (s.optimizer.steps_taken() < c.training.steps) {
    const StepResult step = train_step();
    ++window_steps;
    window_seconds += step.seconds;
    const bool last = step.step == c.training.steps;
    if (step.step == 1 || step.step % c.metrics.log_freq == 0 || last) {
      StepMetrics m;
      m.step = step.step;
      m.steps = c.training.steps;
      m.loss = step.loss;
      m.balance_loss = step.balance_loss;
      m.grad_norm = step.grad_norm;
      m.lr = step.lr;
      m.step_seconds = window_seconds / static_cast<double>(window_steps);
      m.tokens_per_second = tokens_per_step_per_device / m.step_seconds;
      m.tflops = m.tokens_per_second * flops_per_token / 1e12;
      m.mfu = m.tflops / peak.tflops;
      const MemoryUsage memory = memory_usage();
      m.memory_gib = memory.resident_gib;
      m.peak_memory_gib = memory.peak_resident_gib;
      const double seconds_per_step = run_timer.seconds() / static_cast<double>(step.step - first_step);
      m.eta_seconds = seconds_per_step * static_cast<double>(c.training.steps - step.step);
      if (printing) {
        fmt::print("{}\n", format_step(m));
        std::fflush(stdout);
        metrics_file->write(to_json_line(m));
      }
      window_steps = 0;
      window_seconds = 0.0;
    }
    if (s.validation_loader && (step.step % c.validation.freq == 0 || last)) {
      const ValidationResult validation = validate();
      const ValidationMetrics m{step.step, validation.loss, validation.targets, validation.seconds};
      if (printing) {
        fmt::print("{}\n", format_validation(m));
        std::fflush(stdout);
        metrics_file->write(to_json_line(m));
      }
    }
  }
  if (printing) {
    fmt::print("done: {} steps in {}\n", c.training.steps - first_step, format_duration(run_timer.seconds()));
  }
  return run_folder;
}

}  // namespace dsv3::train
