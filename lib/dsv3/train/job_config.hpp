// JobConfig: everything a training run is told, under torchtitan's section and key names, so that a torchtitan
// TOML translates line by line (DESIGN.md "Configs and command line"). Read from `--job.config_file PATH` and
// `--section.key=value` overrides (the command line wins); validate_job_config() checks every value against the
// others and against the world size before any work starts, with errors that name the key, the value and what
// is allowed.
#pragma once

#include "dsv3/model/model_args.hpp"
#include "dsv3/tensor/device_memory.hpp"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace dsv3::train {

struct JobConfig {
  struct Job {
    std::string config_file;
    std::string dump_folder = "./outputs";  // run folders (metrics) go under it
    std::string description;
    bool print_config = false;  // rank 0 prints the resolved config at start
  } job;

  struct Model {
    std::string name = "deepseek_v3";
    std::string flavor = "debugmodel";
    // The run's tokenizer: tokenizer.json or a folder holding it (tokenizer_path wins over hf_assets_path).
    // Empty: the tokenizer recorded in the token dataset is taken as it is.
    std::string tokenizer_path;
    std::string hf_assets_path;
  } model;

  struct Optimizer {
    std::string name = "AdamW";
    double lr = 8e-4;
    double beta1 = 0.9;
    double beta2 = 0.95;
    double eps = 1e-8;
    double weight_decay = 0.1;  // on every parameter (REFERENCE.md §3)
  } optimizer;

  struct LrScheduler {
    std::int64_t warmup_steps = 200;
    double decay_ratio = -1.0;  // < 0: decay over every step after warmup
    std::string decay_type = "linear";
    double min_lr_factor = 0.0;
  } lr_scheduler;

  struct Training {
    std::int64_t local_batch_size = 8;    // sequences per rank per micro-batch
    std::int64_t global_batch_size = -1;  // sequences per optimizer step, all ranks; −1: local × data parallel
    std::int64_t seq_len = 2048;
    double max_norm = 1.0;  // gradient clipping by global L2 norm; ≤ 0: off
    std::int64_t steps = 10000;
    std::string dataset_path;  // a token dataset (*.h5) or text/JSONL inputs (those need a tokenizer)
    std::int64_t seed = 0;
    bool deterministic = false;
    std::string device;  // cpu or cuda; empty: cuda when a GPU is visible, else cpu
  } training;

  struct Validation {
    bool enable = false;
    // Empty: hold out the last holdout_fraction of the training dataset's windows (training then skips them).
    std::string dataset_path;
    double holdout_fraction = 0.05;
    std::int64_t freq = 500;  // every this many steps, and after the last one
    std::int64_t steps = -1;  // batches per validation; −1: the whole validation split once
  } validation;

  struct Metrics {
    std::int64_t log_freq = 10;
    // Peak of one device for MFU, TFLOP/s; 0: measure the CPU's fp32 FMA peak at start (bench/peak.hpp).
    double peak_tflops = 0.0;
  } metrics;

  struct Moe {
    double load_balance_coeff = 1e-3;  // aux-loss-free bias update speed; 0: biases stay at zero
    double balance_loss_coeff = 0.0;   // α of the sequence-wise balance loss; 0: off (REFERENCE.md §2)
    bool force_load_balance = false;   // debug: route round-robin instead of by score
  } moe;

  struct Parallelism {
    std::int64_t data_parallel_replicate_degree = 1;
    std::int64_t data_parallel_shard_degree = -1;  // −1: the ranks the other degrees leave
    std::string fsdp_reshard_after_forward = "default";
    std::int64_t tensor_parallel_degree = 1;
    bool enable_async_tensor_parallel = false;
    std::int64_t pipeline_parallel_degree = 1;
    std::string pipeline_parallel_schedule = "1F1B";
    std::int64_t context_parallel_degree = 1;
    std::int64_t expert_parallel_degree = 1;
    std::int64_t expert_tensor_parallel_degree = 1;
  } parallelism;

  struct Checkpoint {  // train/checkpoint.hpp, checkpoint_folder.hpp
    bool enable = false;                // save every `interval` steps and after the last; resume from `folder`
    std::string folder = "checkpoint";  // under job.dump_folder
    std::int64_t interval = 500;
    std::int64_t keep_latest_k = 10;    // complete checkpoints kept; 0: all
    std::int64_t load_step = -1;        // the step to resume from; −1: the latest complete checkpoint
    bool last_save_model_only = true;   // the checkpoint after the last step holds the model only
    std::string export_dtype = "float32";  // of that model-only checkpoint: float32 or bfloat16
    std::string initial_load_path;      // a checkpoint whose model starts the run when `folder` holds none
    std::string async_mode = "disabled";
  } checkpoint;

  struct ActivationCheckpoint {
    std::string mode = "selective";
    std::string selective_ac_option = "op";
  } activation_checkpoint;
};

// Reads the command line (without the program name): `--job.config_file PATH` and `--section.key=value` or
// `--section.key value`; a boolean key alone means true. Errors name the key (unknown keys, values of the wrong
// type, and for the file also the file and line).
JobConfig parse_job_config(const std::vector<std::string>& arguments);
// Every key with its default and meaning, for --help.
std::string job_config_help();
// The config as TOML that parse_job_config reads back to the same values.
std::string to_toml(const JobConfig& config);

// What validation resolves from the degrees and the world size.
struct RunLayout {
  int data_parallel_degree = 1;
  std::int64_t global_batch_size = 0;            // sequences per optimizer step, all ranks
  std::int64_t gradient_accumulation_steps = 1;  // micro-batches of local_batch_size per rank per step
  Device device = Device::cpu;                   // training.device resolved: where the model runs
};

// The model the config trains: the flavor with max_seq_len = training.seq_len and the [moe] keys applied.
model::ModelArgs model_args(const JobConfig& config);
// The tokenizer.json the config names, or empty when it names none.
std::filesystem::path tokenizer_file(const JobConfig& config);

// training.device resolved: cuda when asked for (an error when no GPU is visible or the build has no CUDA) or
// when unset and a GPU is visible; cpu otherwise.
Device training_device(const JobConfig& config);

// Checks every value, then that the run fits `world_size` ranks and uses only what is built; returns the layout.
RunLayout validate_job_config(const JobConfig& config, int world_size);

}  // namespace dsv3::train
