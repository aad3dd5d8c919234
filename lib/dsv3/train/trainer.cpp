#include "dsv3/train/trainer.hpp"

#include "dsv3/comm/process_grid.hpp"
#include "dsv3/core/error.hpp"
#include "dsv3/core/timer.hpp"
#include "dsv3/io/token_dataset.hpp"
#include "dsv3/model/moe.hpp"
#include "dsv3/ops/loss.hpp"
#include "dsv3/train/job_errors.hpp"
#include "dsv3/train/trainer_state.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <optional>
#include <vector>

namespace dsv3::train {

namespace {

// In-place sum over the ranks of `comm`, in pieces that fit MPI's int counts: the step's few scalars and counts
// (the gradients go through parallel::DataParallel).
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

// Aux-loss-free balancing: every MoE layer's bias moves with the token counts of the whole step, summed over the
// ranks that split the batch (dp × cp) in one all-reduce.
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

// One GPU per rank: the ranks of a node take its visible GPUs in local-rank order (with one visible GPU per rank,
// as `srun --gpus-per-task=1` arranges, every rank takes its only one).
void bind_local_gpu(MPI_Comm world) {
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int local_rank = 0, local_ranks = 1;
  MPI_Comm_rank(node, &local_rank);
  MPI_Comm_size(node, &local_ranks);
  MPI_Comm_free(&node);
  const int gpus = cuda_device_count();
  // Each rank sees all of the node's GPUs (mpiexec) or only its own (srun --gpus-per-task=1); NCCL refuses two
  // ranks of one communicator on one GPU.
  DSV3_CHECK(gpus == 1 || local_ranks <= gpus,
             "training.device = 'cuda': {} ranks on this node but {} GPUs visible: one GPU per rank (start fewer "
             "ranks, or training.device = 'cpu')",
             local_ranks, gpus);
  cuda_set_device(gpus == 1 ? 0 : local_rank);
}

// The process grid of the [parallelism] degrees over `world` (collective), its communicators for `device`.
std::unique_ptr<comm::ProcessGrid> make_process_grid(const JobConfig& c, MPI_Comm world, Device device) {
  const auto& p = c.parallelism;
  const auto degree = [](std::int64_t value) { return static_cast<int>(std::clamp<std::int64_t>(value, -1, INT_MAX)); };
  const comm::ParallelDims dims{.pp = degree(p.pipeline_parallel_degree),
                                .dp_replicate = degree(p.data_parallel_replicate_degree),
                                .dp_shard = degree(p.data_parallel_shard_degree),
                                .cp = degree(p.context_parallel_degree),
                                .tp = degree(p.tensor_parallel_degree),
                                .ep = degree(p.expert_parallel_degree),
                                .etp = degree(p.expert_tensor_parallel_degree)};
  return std::make_unique<comm::ProcessGrid>(world, dims, device);
}

// Dense parameters shard over dp_shard·cp, routed experts over edp, and both replicate over dp_replicate.
parallel::DataParallelGroups data_parallel_groups(const comm::ProcessGrid& grid) {
  return {.dense_shard = &grid.communicator(comm::Group::dp_shard_cp),
          .expert_shard = &grid.communicator(comm::Group::edp),
          .replicate = &grid.communicator(comm::Group::dp_replicate)};
}

// torchtitan's fsdp_reshard_after_forward: "default" reshards unless pipeline parallelism keeps the units for its
// backward soon after (not built yet), "always" reshards, "never" keeps every unit gathered until the step.
bool reshard_after_forward(const std::string& policy) { return policy != "never"; }

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

Trainer::State::State(const JobConfig& config_, const RunLayout& layout_, std::unique_ptr<comm::ProcessGrid> grid_,
                      const model::ModelArgs& args_, DType dtype)
    : config(config_),
      layout(layout_),
      grid(std::move(grid_)),
      batch_comm(grid->comm(comm::Group::dp_cp)),
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
      data_parallel(args_, dtype, layout_.device, data_parallel_groups(*grid),
                    reshard_after_forward(config_.parallelism.fsdp_reshard_after_forward)),
      model(args_, data_parallel.binding(), dtype, layout_.device),
      optimizer(data_parallel.params(), data_parallel.grads(),
                {.beta1 = config_.optimizer.beta1,
                 .beta2 = config_.optimizer.beta2,
                 .eps = config_.optimizer.eps,
                 .weight_decay = config_.optimizer.weight_decay}),
      schedule({.training_steps = config_.training.steps,
                .warmup_steps = config_.lr_scheduler.warmup_steps,
                .decay_ratio = config_.lr_scheduler.decay_ratio,
                .decay_type = parse_decay_type(config_.lr_scheduler.decay_type),
                .min_lr_factor = config_.lr_scheduler.min_lr_factor}) {
  rank = grid->rank(comm::Group::world);
  model.set_unit_hooks(&data_parallel);
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
  data_parallel.initialize(static_cast<std::uint64_t>(config.training.seed));
}

Trainer::Trainer(const JobConfig& config, MPI_Comm comm) : Trainer(config, model_args(config), comm) {}

Trainer::Trainer(const JobConfig& config, const model::ModelArgs& args, MPI_Comm comm, DType dtype) {
  // The collectives first, so that a failure after them (a file missing on one rank) leaves no rank waiting in one.
  require_same_config(config, comm);
  const Device device = training_device(config);
  if (device == Device::cuda) bind_local_gpu(comm);  // before the grid: its NCCL communicators live on that GPU
  std::unique_ptr<comm::ProcessGrid> grid = make_process_grid(config, comm, device);
  int world_size = 1;
  MPI_Comm_size(comm, &world_size);
  const RunLayout layout = validate_job_config(config, world_size);
  model::ModelArgs trained = args;
  trained.load_balance_coeff = config.moe.load_balance_coeff;  // [moe] applies to any model, as to the flavors
  model::validate(trained);
  DSV3_CHECK(trained.max_seq_len >= config.training.seq_len, "training.seq_len = {} exceeds the model's max_seq_len {}",
             config.training.seq_len, trained.max_seq_len);
  state_ = std::make_unique<State>(config, layout, std::move(grid), trained, dtype);
}

Trainer::~Trainer() = default;

std::int64_t Trainer::steps_taken() const { return state_->optimizer.steps_taken(); }
model::Transformer& Trainer::model() { return state_->model; }
parallel::DataParallel& Trainer::data_parallel() { return state_->data_parallel; }

std::int64_t Trainer::model_state_bytes() const {
  const std::int64_t moments = 2 * static_cast<std::int64_t>(state_->data_parallel.params().nbytes());  // AdamW
  return state_->data_parallel.shard_bytes() + moments;
}

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
  all_reduce_sum(&valid_targets, 1, MPI_INT64_T, s.batch_comm);
  DSV3_CHECK(valid_targets > 0, "step {}: the global batch has no valid targets (every label is {})", step + 1,
             ops::kIgnoreIndex);
  const double loss_scale = 1.0 / static_cast<double>(valid_targets);
  // A micro-batch's balance loss is summed over its sequences; the objective takes the mean over the step's.
  const double balance_scale = 1.0 / static_cast<double>(s.layout.global_batch_size);

  s.data_parallel.begin_step(static_cast<std::int64_t>(micro_batches.size()));
  double sums[2] = {0.0, 0.0};  // loss, balance loss
  for (const data::Batch& batch : micro_batches) {
    const model::ForwardResult result =
        s.model.forward(s.record, batch.inputs, batch.labels, s.document_ids(batch), s.options);
    s.model.backward(s.record, loss_scale, balance_scale, s.options);
    sums[0] += result.loss_sum;
    sums[1] += result.balance_loss;
  }

  s.data_parallel.finish_gradients();
  all_reduce_sum(sums, 2, MPI_DOUBLE, s.batch_comm);
  const double loss = sums[0] * loss_scale;
  DSV3_CHECK(std::isfinite(loss), "step {}: the loss is {}: training diverged (try a lower optimizer.lr)", step + 1,
             loss);

  StepResult result;
  result.step = step + 1;
  result.loss = loss;
  result.balance_loss = sums[1] * balance_scale;
  result.valid_targets = valid_targets;
  result.grad_norm = s.data_parallel.grad_norm();
  clip_to_max_norm(s.data_parallel.grads(), result.grad_norm, s.config.training.max_norm);
  result.lr = s.config.optimizer.lr * s.schedule.factor(step);
  s.optimizer.step(result.lr);
  s.data_parallel.parameters_updated();

  if (s.args.load_balance_coeff > 0.0) update_expert_biases(s.model, s.args.load_balance_coeff, s.batch_comm);
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
  all_reduce_sum(&loss_sum, 1, MPI_DOUBLE, s.batch_comm);
  all_reduce_sum(&targets, 1, MPI_INT64_T, s.batch_comm);
  return {loss_sum / static_cast<double>(std::max<std::int64_t>(targets, 1)), targets, timer.seconds()};
}

}  // namespace dsv3::train
