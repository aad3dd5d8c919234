// The trainer's checkpoints: what a rank contributes to one (its shards, the AdamW moments, the expert biases and
// loads, the data loader's position), saving after a step, and the start from a checkpoint.
#include "dsv3/core/error.hpp"
#include "dsv3/io/collective.hpp"
#include "dsv3/train/checkpoint_folder.hpp"
#include "dsv3/train/trainer.hpp"
#include "dsv3/train/trainer_state.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace dsv3::train {

namespace {

std::filesystem::path checkpoint_folder(const JobConfig& config) {
  return std::filesystem::path(config.job.dump_folder) / config.checkpoint.folder;
}

// Which checkpoint to start from, decided on rank 0 (the folder as one rank sees it) and told to all: the path
// ("" for none) and whether only its model is taken.
struct StartPoint {
  std::filesystem::path path;
  bool model_only = false;
  std::string skipped;  // model-only checkpoints newer than the one resumed from, for the log
};

StartPoint find_start_point(const JobConfig& config) {
  const auto& c = config.checkpoint;
  StartPoint start;
  if (c.enable) {
    const std::filesystem::path folder = checkpoint_folder(config);
    if (c.load_step >= 0) {
      start.path = checkpoint_file(folder, c.load_step);
      DSV3_CHECK(std::filesystem::is_regular_file(start.path),
                 "checkpoint.load_step = {}: there is no complete checkpoint {} (complete ones in {}: steps [{}])",
                 c.load_step, start.path.string(), folder.string(), fmt::join(checkpoint_steps(folder), ", "));
      start.model_only = is_model_only_checkpoint(start.path);
      return start;
    }
    // The latest checkpoint that can resume training: a model-only one (the final export) holds no optimizer state.
    const std::vector<std::int64_t> steps = checkpoint_steps(folder);
    for (auto step = steps.rbegin(); step != steps.rend(); ++step) {
      const std::filesystem::path path = checkpoint_file(folder, *step);
      if (!is_model_only_checkpoint(path)) {
        start.path = path;
        return start;
      }
      start.skipped += fmt::format("{}{}", start.skipped.empty() ? "" : ", ", path.filename().string());
    }
  }
  if (!c.initial_load_path.empty()) start = {c.initial_load_path, true, start.skipped};
  return start;
}

void broadcast(std::string& text, MPI_Comm comm) {
  auto length = static_cast<int>(text.size());
  MPI_Bcast(&length, 1, MPI_INT, 0, comm);
  text.resize(static_cast<std::size_t>(length));
  MPI_Bcast(text.data(), length, MPI_CHAR, 0, comm);
}

DType export_dtype(const JobConfig& config, DType training_dtype, bool model_only) {
  if (!model_only) return training_dtype;
  return parse_checkpoint_dtype(config.checkpoint.export_dtype, "checkpoint.export_dtype");
}

}  // namespace

CheckpointState Trainer::State::checkpoint_state() const {
  CheckpointState state;
  state.layout = &data_parallel.layout();
  state.group_ranks = {grid->rank(comm::Group::dp_shard_cp), grid->rank(comm::Group::edp)};
  state.writes_shards = grid->rank(comm::Group::dp_replicate) == 0;
  state.writes_whole = rank == 0;
  state.params = data_parallel.params();
  state.exp_avg = optimizer.exp_avg();
  state.exp_avg_sq = optimizer.exp_avg_sq();
  state.expert_biases = model.expert_biases();
  state.tokens_per_expert = model.tokens_per_expert();
  return state;
}

std::string Trainer::State::restore_from_checkpoint() {
  const MPI_Comm world = grid->comm(comm::Group::world);
  StartPoint start;
  io::agree_on_failure(world, [&] {
    if (rank == 0) start = find_start_point(config);
  });
  std::string path = start.path.string();
  broadcast(path, world);
  int model_only = start.model_only ? 1 : 0;
  MPI_Bcast(&model_only, 1, MPI_INT, 0, world);
  if (path.empty()) return "";
  std::string note = load_checkpoint(path, model_only != 0);
  if (!start.skipped.empty()) note += fmt::format(" (model-only checkpoints skipped: {})", start.skipped);
  return note;
}

std::string Trainer::State::load_checkpoint(const std::filesystem::path& path, bool model_only) {
  const TrainingProgress progress =
      read_checkpoint(path, grid->comm(comm::Group::world), checkpoint_state(), args, model_only);
  data_parallel.parameters_updated();
  if (model_only) {
    const std::string differences =
        progress.model_args_differences.empty()
            ? ""
            : fmt::format("; its model args differ from this run's in {}",
                          fmt::join(progress.model_args_differences, ", "));
    return fmt::format("initial weights from {} (model only{})", path.string(), differences);
  }
  optimizer.restore_steps_taken(progress.step);
  train_loader.restore(progress.data_loader);
  return fmt::format("resumed from {} at step {}", path.string(), progress.step);
}

std::string Trainer::load_checkpoint(const std::filesystem::path& path, bool model_only) {
  return state_->load_checkpoint(path, model_only);
}

std::filesystem::path Trainer::save_checkpoint(bool model_only) {
  State& s = *state_;
  const MPI_Comm world = s.grid->comm(comm::Group::world);
  const CheckpointState state = s.checkpoint_state();
  const TrainingProgress progress{.step = s.optimizer.steps_taken(),
                                  .seed = s.config.training.seed,
                                  .data_loader = s.train_loader.state(),
                                  .model_args_differences = {}};
  const CheckpointContents contents{model_only, export_dtype(s.config, s.data_parallel.params().dtype(), model_only),
                                    model_args_json(s.args), to_toml(s.config)};
  return save_checkpoint_file(checkpoint_folder(s.config), progress.step, s.config.checkpoint.keep_latest_k, world,
                              [&](const std::filesystem::path& path) {
                                write_checkpoint(path, world, state, progress, contents);
                              });
}

std::string Trainer::resume() {
  State& s = *state_;
  if (!s.resumed) {
    s.start_note = s.restore_from_checkpoint();
    s.resumed = true;
  }
  return s.start_note;
}

const std::string& Trainer::start_note() const { return state_->start_note; }

}  // namespace dsv3::train
