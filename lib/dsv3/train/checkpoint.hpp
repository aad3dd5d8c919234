// Checkpoints as parallel HDF5 (DESIGN.md "Checkpoints"): one file per checkpoint, written and read collectively by
// every rank through MPI-IO, each tensor at its full logical shape, so a checkpoint written on one parallel layout
// loads on any other. Each rank transfers only the elements it holds (ShardLayout::piece: one contiguous range of
// each parameter); replicas hold the same shards, so only the first replica writes them.
//
// Schema (version 1), readable as is with h5ls -r, h5dump and h5py:
//
//   /                       attributes: format = "dsv3 checkpoint", schema_version = 1, step, model_only (0/1),
//                           dtype ("float32", "float64", "bfloat16"), model_args (JSON), config (the run's TOML),
//                           checksum_algorithm
//   /model/<name>           every parameter at its logical shape ("layers.3.moe.experts.w1" [E, out, in])
//   /model/layers.<l>.moe.expert_bias   f32 [E]: routing state, part of the model (HF's e_score_correction_bias)
//   /optim/<name>/exp_avg, /optim/<name>/exp_avg_sq   AdamW moments, like the parameter (not in model-only files)
//   /train                  attributes: step, seed, data_loader.{epoch, position, seed, windows_per_epoch},
//                           lr_schedule.step; not in model-only files
//   /train/layers.<l>.moe.tokens_per_expert   i64 [E]: the expert-load counts since the last bias update
//
// Every dataset carries a `checksum` attribute (io/checksum.hpp: independent of how the tensor was split). The
// only randomness of training is the data order, a function of (seed, epoch): the data loader state is the RNG
// state. The LR schedule is a function of the step and the [lr_scheduler] keys (in `config`).
//
// Reading verifies, before anything is used: the schema version, the model args against the run's, every dataset
// present with the right shape and a float (or i64) type, and every checksum; a mismatch is a dsv3::Error naming
// the file and the dataset or attribute.
#pragma once

#include "dsv3/data/dataloader.hpp"
#include "dsv3/model/model_args.hpp"
#include "dsv3/parallel/shard_layout.hpp"
#include "dsv3/tensor/tensor.hpp"

#include <mpi.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace dsv3::io::h5 {
class File;
}

namespace dsv3::train {

inline constexpr std::int64_t kCheckpointSchemaVersion = 1;

// What one rank holds of the checkpointed state: views into the trainer's buffers, written from or read into.
struct CheckpointState {
  const parallel::ShardLayout* layout = nullptr;
  std::array<int, 2> group_ranks{};  // this rank's rank in the dense and the expert sharding group (kShardGroups)
  bool writes_shards = true;         // false on every replica but the first: they hold the same shards
  bool writes_whole = true;          // true on one rank only: it writes what every rank holds whole
  Tensor params;                     // [layout->shard_numel()], f32 or f64
  Tensor exp_avg;                    // AdamW moments, laid out as params
  Tensor exp_avg_sq;
  std::vector<Tensor> expert_biases;      // per layer: f32 [E]; undefined for dense layers
  std::vector<Tensor> tokens_per_expert;  // per layer: i64 [E]; undefined for dense layers
};

struct TrainingProgress {
  std::int64_t step = 0;  // optimizer steps taken
  std::int64_t seed = 0;  // training.seed
  data::DataLoaderState data_loader;
  // Model-only reads: the model args that differ from the run's without changing a shape ("norm_eps 1e-06 →
  // 1e-05"); a full checkpoint's must all agree.
  std::vector<std::string> model_args_differences;
};

struct CheckpointContents {
  bool model_only = false;  // only /model: no optimizer state and no progress (a final export, or initial weights)
  DType dtype = DType::f32;  // of /model and /optim: f32, f64 or bf16 (converted from the parameters' dtype)
  std::string model_args;   // model_args_json()
  std::string config;       // the run config as TOML
};

// The model args as the JSON object stored in the checkpoint.
std::string model_args_json(const model::ModelArgs& args);

// "layers.<l>.moe.expert_bias": the name under /model of a MoE layer's routing bias.
std::string expert_bias_name(std::int64_t layer);

// The root attributes of a checkpoint (the schema above), written collectively: what write_checkpoint and
// ModelCheckpointWriter (model_checkpoint.hpp) share.
void write_checkpoint_attributes(const io::h5::File& file, std::int64_t step, const CheckpointContents& contents);
// What read_checkpoint and ModelCheckpointReader check first: `file` (named `name` in errors) is a dsv3 checkpoint of
// schema version kCheckpointSchemaVersion.
void check_checkpoint_schema(const io::h5::File& file, const std::string& name);

// The names of stored dtypes, in the root attribute `dtype` and in checkpoint.export_dtype: "float32", "float64",
// "bfloat16". Parsing any other name is an error naming `what` (the file or the key).
std::string checkpoint_dtype_name(DType dtype);
DType parse_checkpoint_dtype(const std::string& name, const std::string& what);

// Writes `path` (created or truncated). Collective over `comm`, every rank of the job.
void write_checkpoint(const std::filesystem::path& path, MPI_Comm comm, const CheckpointState& state,
                      const TrainingProgress& progress, const CheckpointContents& contents);

// Verifies `path` and reads it into `state` (only the parameters and expert biases when `model_only`: then only the
// model args that decide shapes must match). Returns the progress it holds (step 0 when model_only). Collective over `comm`; an error is thrown on every rank.
TrainingProgress read_checkpoint(const std::filesystem::path& path, MPI_Comm comm, const CheckpointState& state,
                                 const model::ModelArgs& args, bool model_only);

// Whether `path` is a model-only checkpoint (a cheap look at its root attributes, on the calling rank alone).
bool is_model_only_checkpoint(const std::filesystem::path& path);

}  // namespace dsv3::train
