// The training loop (REFERENCE.md §3) over the data-parallel ranks of a communicator.
//
// One optimizer step: each rank takes gradient_accumulation_steps micro-batches of local_batch_size sequences;
// the valid targets of all of them, on all ranks, are counted first, so that every backward can scale by
// 1/(global count) and the gradients add up to those of the mean loss over the global batch. The gradient
// arena, the loss sums and the per-expert token counts are then summed over the ranks (one all-reduce each),
// the gradients clipped by their global norm, AdamW updates the parameter arena, and the expert biases move
// toward balance with the counts of the whole step (aux-loss-free load balancing).
//
// Every rank holds the full model (replicated data parallelism): the ranks start from the same seeded weights
// and apply the same reduced gradients, so they stay identical. Runs are bitwise reproducible for a given
// seed, rank count and thread count.
#pragma once

#include "dsv3/model/transformer.hpp"
#include "dsv3/train/job_config.hpp"

#include <mpi.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

namespace dsv3::train {

struct StepResult {
  std::int64_t step = 0;           // 1-based: the step just taken
  double loss = 0.0;               // cross-entropy per valid target of the global batch
  double balance_loss = 0.0;       // the sequence-wise balance loss, as added to the objective (0 when off)
  double grad_norm = 0.0;          // global L2 norm before clipping
  double lr = 0.0;                 // the step's learning rate
  std::int64_t valid_targets = 0;  // of the global batch
  double seconds = 0.0;
};

struct ValidationResult {
  double loss = 0.0;  // cross-entropy per valid target over all validation batches of all ranks
  std::int64_t targets = 0;
  double seconds = 0.0;
};

// One device's peak, the denominator of MFU.
struct DevicePeak {
  double tflops = 0.0;
  std::string source;  // how it was found, for the log: "measured: fp32 FMA loop, 2 threads", "metrics.peak_tflops"
};

class Trainer {
 public:
  // Collective over `comm`, whose ranks are the data-parallel ranks. Validates `config` before any work.
  Trainer(const JobConfig& config, MPI_Comm comm);
  // Trains `args` instead of model_args(config) (tests train models smaller than the flavors), in `dtype`
  // (f32 to train; f64 makes equivalence tests exact to rounding).
  Trainer(const JobConfig& config, const model::ModelArgs& args, MPI_Comm comm, DType dtype = DType::f32);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // The whole run: what is trained and how (rank 0 prints it), then the remaining steps with a metrics line
  // every metrics.log_freq steps, validation every validation.freq steps and after the last, and the same
  // numbers in <dump_folder>/runs/<start time>/metrics.jsonl. Returns the run folder.
  std::filesystem::path train(const DevicePeak& peak);
  // One optimizer step.
  StepResult train_step();
  // The held-out loss over validation.steps batches: the same batches each time.
  ValidationResult validate();

  std::int64_t steps_taken() const;
  model::Transformer& model();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Entropy in nats of the token distribution of the token dataset at `path`, over its first `max_tokens` tokens:
// the loss of the best model that ignores context, so a model that learns anything goes below it.
double unigram_entropy(const std::filesystem::path& path, std::int64_t max_tokens);

}  // namespace dsv3::train
