// Trainer::train: the whole run, with what rank 0 prints and writes to metrics.jsonl.
#include "dsv3/core/timer.hpp"
#include "dsv3/train/metrics.hpp"
#include "dsv3/train/stop_signal.hpp"
#include "dsv3/train/trainer.hpp"
#include "dsv3/train/trainer_state.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <optional>

namespace dsv3::train {

namespace {

double gibibytes(std::int64_t bytes) { return static_cast<double>(bytes) / (1 << 30); }

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

std::filesystem::path Trainer::train(const DevicePeak& peak) {
  resume();
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
    fmt::print("process grid: {}\n", s.grid->describe());
    fmt::print("data parallel: {}\n", s.data_parallel.describe());
    fmt::print("model state per rank: {:.3f} GiB of parameter, gradient and AdamW shards (the log's \"state\")\n",
               gibibytes(model_state_bytes()));
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
    if (!s.schedule.adjustment().empty()) fmt::print("  warning: {}\n", s.schedule.adjustment());
    // At seq_len 0 the attention term vanishes: what remains is 6 × the active matmul parameters.
    fmt::print(
        "FLOPs per token: 6 × {} active matmul parameters (output head included, embedding excluded) + 6 × "
        "layers × heads × (qk_head_dim + v_head_dim) × seq_len / 2 (causal attention) = {:.4g} GFLOP\n",
        millions(static_cast<std::int64_t>(model::training_flops_per_token(s.args, 0, kCausalFlops) / 6.0)),
        flops_per_token / 1e9);
    fmt::print("peak per rank: {:.4g} TFLOP/s ({})\n", peak.tflops, peak.source);
    fmt::print("metrics: {}\n", metrics_file->path().string());
    if (!s.start_note.empty()) fmt::print("checkpoint: {}\n", s.start_note);
    if (c.checkpoint.enable) {
      fmt::print("checkpoint: every {} steps and after the last{} to {}, keeping the latest {}\n",
                 c.checkpoint.interval, c.checkpoint.last_save_model_only ? " (model only)" : "",
                 (std::filesystem::path(c.job.dump_folder) / c.checkpoint.folder).string(),
                 c.checkpoint.keep_latest_k == 0 ? std::string("all") : std::to_string(c.checkpoint.keep_latest_k));
    }
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
      const MemoryUsage memory = memory_usage(s.layout.device);
      m.memory_gib = memory.resident_gib;
      m.state_memory_gib = gibibytes(model_state_bytes());
      m.peak_memory_gib = memory.peak_resident_gib;
      const double seconds_per_step = run_timer.seconds() / static_cast<double>(step.step - first_step);
      m.eta_seconds = seconds_per_step * static_cast<double>(c.training.steps - step.step);
      if (printing && step.step == 1 && s.layout.data_parallel_degree > 1) {
        const parallel::CommunicationVolume& sent = s.data_parallel.step_volume();
        fmt::print(
            "data-parallel traffic of step 1 per rank: {:.2f} MB sent in {} collectives (all-gather {:.2f}, "
            "reduce-scatter {:.2f}, all-reduce {:.2f}); textbook {:.2f} MB\n",
            sent.total_bytes() / 1e6, sent.collectives, sent.all_gather_bytes / 1e6, sent.reduce_scatter_bytes / 1e6,
            sent.all_reduce_bytes / 1e6,
            s.data_parallel.textbook_step_bytes(s.layout.gradient_accumulation_steps) / 1e6);
      }
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
    const int stop = last ? 0 : agreed_stop_signal(s.grid->comm(comm::Group::world));
    const bool scheduled = step.step % c.checkpoint.interval == 0 || last;
    if (c.checkpoint.enable && (scheduled || stop != 0)) {
      Timer timer;
      const std::filesystem::path path = save_checkpoint(last && c.checkpoint.last_save_model_only);
      if (printing) {
        const double megabytes = static_cast<double>(std::filesystem::file_size(path)) / 1e6;
        fmt::print("checkpoint: step {} written to {}: {:.1f} MB in {:.2f} s, {:.0f} MB/s\n", step.step,
                   path.string(), megabytes, timer.seconds(), megabytes / timer.seconds());
        std::fflush(stdout);
      }
    }
    if (stop != 0) {
      s.stop_signal = stop;
      if (printing) {
        fmt::print("stopping after step {} of {} on signal {} ({}){}\n", step.step, c.training.steps, stop,
                   strsignal(stop),
                   c.checkpoint.enable ? "; the next start resumes from its checkpoint"
                                       : "; checkpoint.enable is false, so nothing was saved");
        std::fflush(stdout);
      }
      break;
    }
  }
  if (printing && s.stop_signal == 0) {
    fmt::print("done: {} steps in {}\n", c.training.steps - first_step, format_duration(run_timer.seconds()));
  }
  return run_folder;
}

int Trainer::stop_signal() const { return state_->stop_signal; }

}  // namespace dsv3::train
