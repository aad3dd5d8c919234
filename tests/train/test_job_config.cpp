#include "dsv3/train/job_config.hpp"

#include "dsv3/core/error.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace dsv3;
using namespace dsv3::train;

namespace {

// A config file and a stand-in dataset file in a fresh folder of this process.
class ConfigFolder {
 public:
  ConfigFolder() : path_(std::filesystem::temp_directory_path() / fmt::format("dsv3-job-config-{}", getpid())) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
    std::ofstream(path_ / "data.h5") << "stand-in: validation only checks that it exists";
  }
  ~ConfigFolder() { std::filesystem::remove_all(path_); }

  std::string write(const std::string& text) const {
    const std::filesystem::path file = path_ / "job.toml";
    std::ofstream(file) << text;
    return file.string();
  }
  std::string dataset() const { return (path_ / "data.h5").string(); }

 private:
  std::filesystem::path path_;
};

// A valid debug job on the stand-in dataset, with `extra` command-line arguments.
JobConfig debug_job(const ConfigFolder& folder, std::vector<std::string> extra = {}) {
  std::vector<std::string> arguments = {"--training.dataset_path=" + folder.dataset(), "--training.steps=10",
                                        "--lr_scheduler.warmup_steps=2", "--training.local_batch_size=2",
                                        "--training.seq_len=64"};
  arguments.insert(arguments.end(), extra.begin(), extra.end());
  return parse_job_config(arguments);
}

std::string validation_error(const JobConfig& config, int world_size = 1) {
  try {
    validate_job_config(config, world_size);
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

}  // namespace

TEST_CASE("job config: defaults are torchtitan's") {
  const JobConfig config = parse_job_config({});
  CHECK(config.model.name == "deepseek_v3");
  CHECK(config.model.flavor == "debugmodel");
  CHECK(config.optimizer.name == "AdamW");
  CHECK(config.optimizer.beta2 == 0.95);
  CHECK(config.optimizer.weight_decay == 0.1);
  CHECK(config.lr_scheduler.warmup_steps == 200);
  CHECK(config.training.global_batch_size == -1);
  CHECK(config.training.max_norm == 1.0);
  CHECK(config.parallelism.data_parallel_shard_degree == -1);
  CHECK(config.activation_checkpoint.mode == "selective");
  CHECK_FALSE(config.checkpoint.enable);
}

TEST_CASE("job config: a torchtitan TOML file, with the command line winning") {
  ConfigFolder folder;
  const std::string path = folder.write(R"([job]
dump_folder = "./out"
description = "DeepSeek-V3 debug training"

[model]
name = "deepseek_v3"
flavor = "debugmodel_flex_attn"

[optimizer]
name = "AdamW"
lr = 8e-4
eps = 1e-8

[lr_scheduler]
warmup_steps = 2
decay_ratio = 0.8
decay_type = "cosine"
min_lr_factor = 0.1

[training]
local_batch_size = 8
seq_len = 2048
max_norm = 1.0
steps = 10

[parallelism]
data_parallel_shard_degree = -1
pipeline_parallel_schedule = "1F1B"

[checkpoint]
enable = false
interval = 10

[activation_checkpoint]
mode = "full"
)");
  const JobConfig config = parse_job_config(
      {"--job.config_file", path, "--training.steps=20", "--checkpoint.enable=false", "--validation.enable"});
  CHECK(config.job.config_file == path);
  CHECK(config.job.dump_folder == "./out");
  CHECK(config.job.description == "DeepSeek-V3 debug training");
  CHECK(config.model.flavor == "debugmodel_flex_attn");
  CHECK(config.optimizer.lr == 8e-4);
  CHECK(config.lr_scheduler.decay_type == "cosine");
  CHECK(config.lr_scheduler.min_lr_factor == 0.1);
  CHECK(config.training.local_batch_size == 8);
  CHECK(config.training.steps == 20);  // the command line wins over the file
  CHECK(config.checkpoint.interval == 10);
  CHECK(config.activation_checkpoint.mode == "full");
  CHECK(config.validation.enable);  // a boolean key alone means true
}

TEST_CASE("job config: to_toml reads back to the same config") {
  ConfigFolder folder;
  JobConfig config = debug_job(folder, {"--job.description=quotes \" and \\ backslashes", "--optimizer.lr=3.3e-4",
                                        "--moe.balance_loss_coeff=1e-4", "--validation.enable=true"});
  const JobConfig read_back = parse_job_config({"--job.config_file", folder.write(to_toml(config))});
  CHECK(to_toml(read_back) == to_toml(config));
  CHECK(read_back.job.description == "quotes \" and \\ backslashes");
  CHECK(read_back.optimizer.lr == 3.3e-4);
  CHECK(read_back.moe.balance_loss_coeff == 1e-4);
  CHECK(read_back.validation.enable);
}

TEST_CASE("job config: parse errors name the key, and the file and line") {
  ConfigFolder folder;
  CHECK_THROWS_WITH_AS(parse_job_config({"--training.stepz=5"}), doctest::Contains("training.stepz"), Error);
  // No abbreviations: a prefix of a key is not that key.
  CHECK_THROWS_WITH_AS(parse_job_config({"--training.step=5"}), doctest::Contains("training.step"), Error);
  CHECK_THROWS_WITH_AS(parse_job_config({"--training.steps=ten"}), doctest::Contains("training.steps"), Error);
  CHECK_THROWS_WITH_AS(parse_job_config({"stray"}), doctest::Contains("command line"), Error);
  const std::string unknown = folder.write("[training]\nsteps = 5\n[optimizer]\nmomentum = 0.9\n");
  const std::string expected = unknown + ":4: unknown key 'optimizer.momentum'";
  CHECK_THROWS_WITH_AS(parse_job_config({"--job.config_file=" + unknown}), doctest::Contains(expected.c_str()), Error);
  const std::string bad_value = folder.write("[training]\nseq_len = long\n");
  CHECK_THROWS_WITH_AS(parse_job_config({"--job.config_file=" + bad_value}), doctest::Contains("training.seq_len"),
                       Error);
  CHECK_THROWS_WITH_AS(parse_job_config({"--job.config_file=/nonexistent/job.toml"}),
                       doctest::Contains("/nonexistent/job.toml"), Error);
}

TEST_CASE("job config: validation resolves the data-parallel layout and gradient accumulation") {
  ConfigFolder folder;
  const RunLayout single = validate_job_config(debug_job(folder), 1);
  CHECK(single.data_parallel_degree == 1);
  CHECK(single.global_batch_size == 2);
  CHECK(single.gradient_accumulation_steps == 1);
  const RunLayout accumulated = validate_job_config(debug_job(folder, {"--training.global_batch_size=8"}), 2);
  CHECK(accumulated.data_parallel_degree == 2);
  CHECK(accumulated.global_batch_size == 8);
  CHECK(accumulated.gradient_accumulation_steps == 2);
  const RunLayout replicated = validate_job_config(debug_job(folder, {"--parallelism.data_parallel_replicate_degree=2",
                                                                      "--parallelism.data_parallel_shard_degree=2"}),
                                                   4);
  CHECK(replicated.data_parallel_degree == 4);
  CHECK(replicated.global_batch_size == 8);
}

TEST_CASE("job config: training.device is cuda when a GPU is visible or asked for, cpu otherwise") {
  ConfigFolder folder;
  CHECK(training_device(debug_job(folder, {"--training.device=cpu"})) == Device::cpu);
  CHECK(training_device(debug_job(folder)) == (cuda_available() ? Device::cuda : Device::cpu));
  if (cuda_available()) {
    CHECK(training_device(debug_job(folder, {"--training.device=cuda"})) == Device::cuda);
  } else {
    CHECK_THROWS_WITH(training_device(debug_job(folder, {"--training.device=cuda"})),
                      doctest::Contains(cuda_built() ? "training.device = 'cuda': no GPU is visible to this process"
                                                     : "training.device = 'cuda': this build of dsv3 has no CUDA"));
  }
}

TEST_CASE("job config: every bad value is refused with the key, the value and what is allowed") {
  ConfigFolder folder;
  struct Case {
    std::vector<std::string> arguments;
    std::string message;
    int world_size = 1;
  };
  const std::vector<Case> cases = {
      {{"--model.name=llama3"}, "model.name = 'llama3' is not one of deepseek_v3"},
      {{"--model.flavor=7B"}, "model.flavor = '7B' is not a known flavor"},
      {{"--model.tokenizer_path=/nonexistent/tok.json"}, "model.tokenizer_path = '/nonexistent/tok.json'"},
      {{"--model.hf_assets_path=/nonexistent"}, "model.hf_assets_path = '/nonexistent/tokenizer.json'"},
      {{"--optimizer.name=SGD"}, "optimizer.name = 'SGD' is not one of AdamW"},
      {{"--optimizer.lr=0"}, "optimizer.lr = 0 must be positive"},
      {{"--optimizer.beta1=1"}, "optimizer.beta1 = 1 must be in [0, 1)"},
      {{"--optimizer.beta2=-0.5"}, "optimizer.beta2 = -0.5 must be in [0, 1)"},
      {{"--optimizer.eps=0"}, "optimizer.eps = 0 must be positive"},
      {{"--optimizer.weight_decay=-1"}, "optimizer.weight_decay = -1"},
      {{"--lr_scheduler.decay_type=exp"}, "lr_scheduler.decay_type = 'exp'"},
      {{"--lr_scheduler.warmup_steps=11"}, "lr_scheduler.warmup_steps = 11"},
      {{"--lr_scheduler.min_lr_factor=2"}, "lr_scheduler.min_lr_factor = 2"},
      {{"--training.steps=-3"}, "training.steps = -3 must be positive"},
      {{"--training.local_batch_size=0"}, "training.local_batch_size = 0 must be positive"},
      {{"--training.seq_len=0"}, "training.seq_len = 0 must be positive"},
      {{"--training.seed=-1"}, "training.seed = -1"},
      {{"--training.max_norm=inf"}, "training.max_norm = inf must be finite"},
      {{"--training.dataset_path", ""}, "training.dataset_path is empty"},
      {{"--training.dataset_path=/nonexistent/data.h5"}, "training.dataset_path = '/nonexistent/data.h5'"},
      {{"--training.device=tpu"}, "training.device = 'tpu' is not one of cpu, cuda"},
      {{"--training.global_batch_size=3"},
       "training.global_batch_size = 3 must be -1 or a positive multiple of training.local_batch_size × data-parallel "
       "degree = 2 × 1 = 2"},
      {{"--training.global_batch_size=4"}, "training.global_batch_size = 4", 4},
      {{"--training.global_batch_size=0"}, "training.global_batch_size = 0"},
      {{"--validation.enable", "--validation.freq=0"}, "validation.freq = 0 must be positive"},
      {{"--validation.enable", "--validation.steps=0"}, "validation.steps = 0"},
      {{"--validation.enable", "--validation.holdout_fraction=1"}, "validation.holdout_fraction = 1"},
      {{"--validation.enable", "--validation.dataset_path=/nonexistent/v.h5"},
       "validation.dataset_path = '/nonexistent"},
      {{"--metrics.log_freq=0"}, "metrics.log_freq = 0 must be positive"},
      {{"--metrics.peak_tflops=-1"}, "metrics.peak_tflops = -1"},
      {{"--moe.load_balance_coeff=-1e-3"}, "moe.load_balance_coeff = -0.001"},
      {{"--moe.balance_loss_coeff=-1"}, "moe.balance_loss_coeff = -1"},
      {{"--checkpoint.interval=0"}, "checkpoint.interval = 0 must be positive"},
      {{"--checkpoint.keep_latest_k=-1"}, "checkpoint.keep_latest_k = -1 must be ≥ 0"},
      {{"--checkpoint.load_step=-2"}, "checkpoint.load_step = -2 must be a step ≥ 0, or -1"},
      {{"--checkpoint.export_dtype=int8"}, "checkpoint.export_dtype = 'int8' is not one of float32, bfloat16"},
      {{"--checkpoint.export_dtype=float16"}, "checkpoint.export_dtype = 'float16': dsv3 exports float32 or bfloat16"},
      {{"--checkpoint.async_mode=later"}, "checkpoint.async_mode = 'later'"},
      {{"--checkpoint.async_mode=async"}, "checkpoint.async_mode = 'async': asynchronous checkpoints are not built"},
      {{"--checkpoint.initial_load_path=/nonexistent/step-3.h5"}, "checkpoint.initial_load_path = '/nonexistent"},
      {{"--activation_checkpoint.mode=some"},
       "activation_checkpoint.mode = 'some' is not one of none, selective, full"},
      {{"--activation_checkpoint.selective_ac_option=0"}, "activation_checkpoint.selective_ac_option = '0'"},
      {{"--parallelism.data_parallel_shard_degree=3"}, "= 3 ranks, but the job has 2 MPI ranks", 2},
      {{"--parallelism.data_parallel_replicate_degree=3"}, "does not divide the 2 MPI ranks", 2},
      {{"--parallelism.data_parallel_replicate_degree=0"}, "parallelism.data_parallel_replicate_degree = 0"},
      {{"--parallelism.tensor_parallel_degree=3", "--parallelism.data_parallel_shard_degree=1"},
       "parallelism.tensor_parallel_degree = 3 must divide the model's 16 attention heads",
       3},
      {{"--parallelism.tensor_parallel_degree=2"},
       "parallelism.tensor_parallel_degree = 2: tensor parallelism is not built yet",
       2},
      {{"--parallelism.pipeline_parallel_degree=2"}, "pipeline parallelism is not built yet", 2},
      {{"--parallelism.pipeline_parallel_degree=7"},
       "parallelism.pipeline_parallel_degree = 7 exceeds the model's 6 layers",
       7},
      {{"--parallelism.context_parallel_degree=2"}, "context parallelism is not built yet", 2},
      {{"--parallelism.expert_parallel_degree=3"},
       "parallelism.expert_parallel_degree = 3 must divide the model's 8 routed experts"},
      {{"--parallelism.expert_parallel_degree=2"}, "expert parallelism is not built yet", 2},
      {{"--parallelism.expert_tensor_parallel_degree=2"}, "parallelism.expert_tensor_parallel_degree = 2 must be 1 or"},
      {{"--parallelism.enable_async_tensor_parallel"}, "parallelism.enable_async_tensor_parallel = true"},
      {{"--parallelism.pipeline_parallel_schedule=Zigzag"}, "parallelism.pipeline_parallel_schedule = 'Zigzag'"},
      {{"--parallelism.fsdp_reshard_after_forward=sometimes"}, "parallelism.fsdp_reshard_after_forward = 'sometimes'"},
      {{"--job.dump_folder", ""}, "job.dump_folder is empty"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.message);
    const std::string message = validation_error(debug_job(folder, c.arguments), c.world_size);
    CHECK_MESSAGE(message.find(c.message) != std::string::npos, message);
  }
  // The model's own checks come through validate_job_config too.
  CHECK(validation_error(debug_job(folder)).empty());
}

TEST_CASE("job config: model args follow the flavor, the sequence length and the [moe] keys") {
  ConfigFolder folder;
  const model::ModelArgs args =
      model_args(debug_job(folder, {"--model.flavor=debugmodel_flex_attn", "--moe.load_balance_coeff=0"}));
  CHECK(args.mask == model::MaskType::document_causal);
  CHECK(args.max_seq_len == 64);
  CHECK(args.load_balance_coeff == 0.0);
  CHECK(model_args(debug_job(folder)).mask == model::MaskType::causal);
}

TEST_CASE("job config: tokenizer_path wins over hf_assets_path, and folders mean their tokenizer.json") {
  ConfigFolder folder;
  CHECK(tokenizer_file(debug_job(folder)).empty());
  CHECK(tokenizer_file(debug_job(folder, {"--model.hf_assets_path=/tmp"})) == "/tmp/tokenizer.json");
  CHECK(tokenizer_file(debug_job(folder, {"--model.hf_assets_path=/tmp", "--model.tokenizer_path=/x/t.json"})) ==
        "/x/t.json");
}

TEST_CASE("job config: --help lists every section") {
  const std::string help = job_config_help();
  for (const char* key : {"job.config_file", "training.global_batch_size", "validation.freq", "metrics.log_freq",
                          "moe.balance_loss_coeff", "parallelism.expert_parallel_degree", "checkpoint.enable",
                          "activation_checkpoint.mode"}) {
    CHECK_MESSAGE(help.find(key) != std::string::npos, key);
  }
}
