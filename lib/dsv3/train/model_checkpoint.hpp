// Model-only checkpoints (the schema of checkpoint.hpp) written and read one piece at a time, for tools that
// stream a model through and never hold it whole: dsv3_convert_hf and dsv3_eval. The file is the one
// write_checkpoint writes with model_only, and it loads through read_checkpoint (checkpoint.initial_load_path).
#pragma once

#include "dsv3/model/model_args.hpp"
#include "dsv3/train/checkpoint.hpp"

#include <mpi.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace dsv3::train {

// One dataset of a model-only checkpoint: /model/<name> at its logical shape, in its stored dtype.
struct ModelDataset {
  std::string name;  // e.g. "layers.3.moe.experts.w1"
  std::vector<std::int64_t> shape;
  DType dtype = DType::f32;

  std::int64_t numel() const;
};

// The datasets of a model-only checkpoint of `args` with parameters stored in `dtype`: every parameter in spec
// order, then the expert biases (always f32).
std::vector<ModelDataset> model_datasets(const model::ModelArgs& args, DType dtype);

// The model args of a checkpoint's `model_args` attribute (model_args_json's inverse); `source` names it in errors.
model::ModelArgs model_args_from_json(const std::string& text, const std::string& source);

class ModelCheckpointWriter {
 public:
  // Collective over `comm`: creates `path` (truncating it), writes the root attributes and creates every dataset.
  ModelCheckpointWriter(const std::filesystem::path& path, MPI_Comm comm, const CheckpointContents& contents,
                        std::vector<ModelDataset> datasets);
  ~ModelCheckpointWriter();

  const std::vector<ModelDataset>& datasets() const { return datasets_; }
  // This rank alone (an independent transfer): elements [begin, begin + values.numel()) of dataset `index` of the
  // flattened tensor, from float values of any dtype (converted to the stored one).
  void write(std::size_t index, std::int64_t begin, const Tensor& values);
  // Collective: the checksum attributes, then the file is flushed to disk. Each element must have been written by
  // exactly one rank.
  void finish();

 private:
  struct Open;
  std::vector<ModelDataset> datasets_;
  MPI_Comm comm_;
  std::unique_ptr<Open> open_;
};

class ModelCheckpointReader {
 public:
  // Opens `path` on the calling rank alone and checks it is a dsv3 checkpoint of a schema this dsv3 reads.
  explicit ModelCheckpointReader(const std::filesystem::path& path);
  ~ModelCheckpointReader();

  const model::ModelArgs& args() const { return args_; }
  DType dtype() const { return dtype_; }  // of the parameters as stored
  const std::vector<ModelDataset>& datasets() const { return datasets_; }
  // Elements [begin, begin + count) of /model/<name>, flattened, as f32. An error names the file and dataset if
  // it is missing or of another shape than the model args give.
  Tensor read(const std::string& name, std::int64_t begin, std::int64_t count);
  // Collective over `comm` (MPI_COMM_SELF for one reader), after the ranks together read every element of every
  // dataset once: an error naming the dataset unless the checksum of what was read matches the stored one.
  void verify(MPI_Comm comm);

 private:
  struct Open;
  std::filesystem::path path_;
  model::ModelArgs args_;
  DType dtype_ = DType::f32;
  std::vector<ModelDataset> datasets_;
  std::unique_ptr<Open> open_;
};

}  // namespace dsv3::train
