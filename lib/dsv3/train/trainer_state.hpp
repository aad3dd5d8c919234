// Trainer::State: what a Trainer holds, shared by trainer.cpp (setup, the step, validation) and trainer_run.cpp
// (the whole run with its log). Private to lib/dsv3/train.
#pragma once

#include "dsv3/comm/process_grid.hpp"
#include "dsv3/data/dataloader.hpp"
#include "dsv3/data/tokenizer.hpp"
#include "dsv3/model/model_record.hpp"
#include "dsv3/parallel/data_parallel.hpp"
#include "dsv3/train/checkpoint.hpp"
#include "dsv3/train/lr_schedule.hpp"
#include "dsv3/train/optimizer.hpp"
#include "dsv3/train/trainer.hpp"

#include <memory>
#include <optional>
#include <string>

namespace dsv3::train {

struct Trainer::State {
  JobConfig config;
  RunLayout layout;
  std::unique_ptr<comm::ProcessGrid> grid;
  MPI_Comm batch_comm;  // the dp × cp ranks, which split the global batch: token and loss sums go over them
  int rank = 0;         // in the whole job
  model::ModelArgs args;
  model::TrainingOptions options;
  std::optional<data::Tokenizer> tokenizer;
  std::optional<data::DocumentEncoder> encoder;
  data::DataLoader train_loader;
  std::optional<data::DataLoader> validation_loader;
  data::DataLoaderState validation_start;
  std::int64_t validation_batches = 0;
  parallel::DataParallel data_parallel;
  model::Transformer model;
  model::ModelRecord record;
  AdamW optimizer;
  LrSchedule schedule;
  bool resumed = false;    // Trainer::resume() has run
  std::string start_note;  // Trainer::start_note()
  int stop_signal = 0;     // Trainer::stop_signal()

  State(const JobConfig& config_, const RunLayout& layout_, std::unique_ptr<comm::ProcessGrid> grid_,
        const model::ModelArgs& args_, DType dtype);

  // Training data is shuffled; validation batches are taken in order (the same ones every time anyway).
  data::DataLoaderOptions loader_options(const std::string& path, double validation_fraction, data::Split split,
                                         bool shuffle) const {
    data::DataLoaderOptions options;
    options.inputs = {path};
    options.batch_size = config.training.local_batch_size;
    options.seq_len = config.training.seq_len;
    options.dp_rank = grid->rank(comm::Group::dp);
    options.dp_size = layout.data_parallel_degree;
    options.seed = static_cast<std::uint64_t>(config.training.seed);
    options.shuffle = shuffle;
    options.validation_fraction = validation_fraction;
    options.split = split;
    return options;
  }

  // trainer_checkpoint.cpp: this rank's view of what a checkpoint holds; the start from a checkpoint
  // (Trainer::resume; returns start_note); Trainer::load_checkpoint.
  CheckpointState checkpoint_state() const;
  std::string restore_from_checkpoint();
  std::string load_checkpoint(const std::filesystem::path& path, bool model_only);

  const Tensor& document_ids(const data::Batch& batch) const {
    static const Tensor undefined;
    return args.mask == model::MaskType::document_causal ? batch.document_ids : undefined;
  }
};

}  // namespace dsv3::train
