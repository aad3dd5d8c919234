// The training loop (REFERENCE.md §3) over the ranks of a communicator, arranged in a process grid by the
// [parallelism] degrees.
//
// One optimizer step: each data-parallel rank takes gradient_accumulation_steps micro-batches of local_batch_size
// sequences; the valid targets of all of them, on all ranks, are counted first, so that every backward can scale
// by 1/(global count) and the gradients add up to those of the mean loss over the global batch. The gradients are
// reduced over the data-parallel ranks while backward runs (parallel::DataParallel: all-reduced in buckets under
// DDP, reduce-scattered into shards under FSDP, both under HSDP); the loss sums and the per-expert token counts
// are summed over the ranks that split the batch (dp × cp). The gradients are clipped by their global norm, AdamW
// updates this rank's parameter shard, and the expert biases move toward balance with the counts of the whole step
// (aux-loss-free load balancing).
//
// Every rank starts from the same seeded weights (each initialises its own shard) and replicas apply the same
// reduced gradients, so they stay identical. Runs are bitwise reproducible for a given seed, layout and thread
// count; the same global batch on any data-parallel layout gives the single-rank losses and weights up to rounding.
#pragma once

#include "dsv3/model/transformer.hpp"
#include "dsv3/parallel/data_parallel.hpp"
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
  // Collective over `comm`, every rank of the job: checks that `config` is the same on every rank, builds the
  // process grid from [parallelism], then validates `config` before any work. The weights are the seeded initial
  // ones until resume().
  Trainer(const JobConfig& config, MPI_Comm comm);
  // Trains `args` instead of model_args(config) (tests train models smaller than the flavors), in `dtype`
  // (f32 to train; f64 makes equivalence tests exact to rounding).
  Trainer(const JobConfig& config, const model::ModelArgs& args, MPI_Comm comm, DType dtype = DType::f32);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Where the run starts (collective; once, before training; later calls return the same note): with
  // checkpoint.enable and a checkpoint in checkpoint.folder, continues from the latest complete one (or
  // checkpoint.load_step), on any parallel layout; otherwise from checkpoint.initial_load_path's model when given;
  // otherwise from the seeded weights. Returns start_note(). Separate from the constructor so that a rank that
  // fails to construct its Trainer leaves no other rank waiting in resume's collectives (dsv3_train agrees on
  // construction first).
  std::string resume();
  // The whole run, after resume() (called here if nobody has): what is trained and how (rank 0 prints it), then
  // the remaining steps with a metrics line every metrics.log_freq steps, validation every validation.freq steps
  // and after the last, a checkpoint every checkpoint.interval steps and after the last (with checkpoint.enable),
  // and the same numbers in <dump_folder>/runs/<start time>/metrics.jsonl. Returns the run folder.
  // A stop request (train/stop_signal.hpp) caught by any rank ends the run after the current step, with a
  // checkpoint when checkpoint.enable; stop_signal() then says which signal it was.
  std::filesystem::path train(const DevicePeak& peak);
  // The signal that ended train() early, 0 when it ran every step.
  int stop_signal() const;
  // One optimizer step.
  StepResult train_step();
  // The held-out loss over validation.steps batches: the same batches each time.
  ValidationResult validate();

  // Writes the state after steps_taken() steps as <job.dump_folder>/<checkpoint.folder>/step-<N>.h5
  // (train/checkpoint.hpp), only the model in checkpoint.export_dtype when `model_only`, and keeps the latest
  // checkpoint.keep_latest_k checkpoints. Collective. Returns the file.
  std::filesystem::path save_checkpoint(bool model_only = false);
  // Continues from checkpoint `path` as the constructor does from checkpoint.folder (or takes only its model),
  // on any parallel layout. Collective. Returns the note for the log.
  std::string load_checkpoint(const std::filesystem::path& path, bool model_only = false);
  // Where resume() took the state from, for the log: empty for the seeded initial weights, else e.g.
  // "resumed from outputs/checkpoint/step-20.h5 at step 20".
  const std::string& start_note() const;

  std::int64_t steps_taken() const;
  model::Transformer& model();
  parallel::DataParallel& data_parallel();
  // Bytes this rank keeps for the whole run for the model: parameter, gradient and AdamW state shards (the
  // gathered unit buffers of FSDP and the activations are not included). About 1/N of one rank's under FSDP on N.
  std::int64_t model_state_bytes() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Entropy in nats of the token distribution of the token dataset at `path`, over its first `max_tokens` tokens:
// the loss of the best model that ignores context, so a model that learns anything goes below it.
double unigram_entropy(const std::filesystem::path& path, std::int64_t max_tokens);

}  // namespace dsv3::train
