#include "dsv3/train/job_config.hpp"

#include "dsv3/core/config_file.hpp"
#include "dsv3/core/error.hpp"
#include "dsv3/train/lr_schedule.hpp"

#include <boost/program_options.hpp>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <type_traits>

namespace dsv3::train {

namespace po = boost::program_options;

namespace {

// Every key of the config, once: its name, the field it sets and what it means. The options description, the
// help text and to_toml() are all made from this list, so they cannot disagree.
template <class Visit>
void visit_keys(JobConfig& c, Visit&& visit) {
  visit("job.config_file", c.job.config_file, "TOML config file; keys given on the command line win over it");
  visit("job.dump_folder", c.job.dump_folder, "folder for run outputs (metrics under runs/<time>/)");
  visit("job.description", c.job.description, "free text, printed at start");
  visit("job.print_config", c.job.print_config, "print the resolved config at start");

  visit("model.name", c.model.name, "model family: deepseek_v3");
  visit("model.flavor", c.model.flavor, "debugmodel, debugmodel_flex_attn, 16B, 236B, 671B");
  visit("model.tokenizer_path", c.model.tokenizer_path,
        "tokenizer.json or a folder with it (wins over hf_assets_path)");
  visit("model.hf_assets_path", c.model.hf_assets_path, "folder with tokenizer.json (HF assets)");

  visit("optimizer.name", c.optimizer.name, "AdamW");
  visit("optimizer.lr", c.optimizer.lr, "peak learning rate");
  visit("optimizer.beta1", c.optimizer.beta1, "AdamW β1");
  visit("optimizer.beta2", c.optimizer.beta2, "AdamW β2");
  visit("optimizer.eps", c.optimizer.eps, "AdamW epsilon");
  visit("optimizer.weight_decay", c.optimizer.weight_decay, "decoupled weight decay, on all parameters");

  visit("lr_scheduler.warmup_steps", c.lr_scheduler.warmup_steps, "linear warmup steps");
  visit("lr_scheduler.decay_ratio", c.lr_scheduler.decay_ratio, "fraction of steps that decay; < 0: all after warmup");
  visit("lr_scheduler.decay_type", c.lr_scheduler.decay_type, "linear, cosine, sqrt");
  visit("lr_scheduler.min_lr_factor", c.lr_scheduler.min_lr_factor, "final LR as a fraction of optimizer.lr");

  visit("training.local_batch_size", c.training.local_batch_size, "sequences per rank per micro-batch");
  visit("training.global_batch_size", c.training.global_batch_size,
        "sequences per optimizer step over all ranks (gradient accumulation); -1: local × data parallel");
  visit("training.seq_len", c.training.seq_len, "tokens per sequence");
  visit("training.max_norm", c.training.max_norm, "clip gradients to this global L2 norm; <= 0: no clipping");
  visit("training.steps", c.training.steps, "optimizer steps");
  visit("training.dataset_path", c.training.dataset_path, "token dataset (*.h5) or text/JSONL files");
  visit("training.seed", c.training.seed, "seed of the initial weights and of the data order");
  visit("training.deterministic", c.training.deterministic,
        "bitwise-reproducible runs (always so on the CPU backend at a fixed thread count)");
  visit("training.device", c.training.device, "cpu or cuda (one GPU per rank); empty: cuda when a GPU is visible");

  visit("validation.enable", c.validation.enable, "compute a held-out loss during training");
  visit("validation.dataset_path", c.validation.dataset_path,
        "held-out dataset; empty: a holdout of the training data");
  visit("validation.holdout_fraction", c.validation.holdout_fraction,
        "fraction of the training windows held out when validation.dataset_path is empty");
  visit("validation.freq", c.validation.freq, "validate every this many steps");
  visit("validation.steps", c.validation.steps, "batches per validation; -1: the whole validation split");

  visit("metrics.log_freq", c.metrics.log_freq, "print and record metrics every this many steps");
  visit("metrics.peak_tflops", c.metrics.peak_tflops, "one device's peak TFLOP/s for MFU; 0: measure the CPU");

  visit("moe.load_balance_coeff", c.moe.load_balance_coeff, "expert-bias update speed (aux-loss-free balancing)");
  visit("moe.balance_loss_coeff", c.moe.balance_loss_coeff, "alpha of the sequence-wise balance loss; 0: off");
  visit("moe.force_load_balance", c.moe.force_load_balance, "debug: route tokens round-robin");

  visit("parallelism.data_parallel_replicate_degree", c.parallelism.data_parallel_replicate_degree,
        "DDP/HSDP replicas");
  visit("parallelism.data_parallel_shard_degree", c.parallelism.data_parallel_shard_degree,
        "FSDP shards; -1: the ranks left by the other degrees");
  visit("parallelism.fsdp_reshard_after_forward", c.parallelism.fsdp_reshard_after_forward, "default, never, always");
  visit("parallelism.tensor_parallel_degree", c.parallelism.tensor_parallel_degree, "tensor parallel ranks");
  visit("parallelism.enable_async_tensor_parallel", c.parallelism.enable_async_tensor_parallel,
        "overlap tensor-parallel communication");
  visit("parallelism.pipeline_parallel_degree", c.parallelism.pipeline_parallel_degree, "pipeline stages");
  visit("parallelism.pipeline_parallel_schedule", c.parallelism.pipeline_parallel_schedule, "pipeline schedule");
  visit("parallelism.context_parallel_degree", c.parallelism.context_parallel_degree, "context parallel ranks");
  visit("parallelism.expert_parallel_degree", c.parallelism.expert_parallel_degree, "expert parallel ranks");
  visit("parallelism.expert_tensor_parallel_degree", c.parallelism.expert_tensor_parallel_degree,
        "expert tensor parallel ranks");

  visit("checkpoint.enable", c.checkpoint.enable,
        "write checkpoints, and resume from the latest one in checkpoint.folder at start");
  visit("checkpoint.folder", c.checkpoint.folder, "checkpoint folder under job.dump_folder");
  visit("checkpoint.interval", c.checkpoint.interval, "steps between checkpoints");
  visit("checkpoint.keep_latest_k", c.checkpoint.keep_latest_k, "complete checkpoints kept; 0: all");
  visit("checkpoint.load_step", c.checkpoint.load_step, "step to resume from; -1: the latest checkpoint");
  visit("checkpoint.last_save_model_only", c.checkpoint.last_save_model_only,
        "last checkpoint without optimizer state");
  visit("checkpoint.export_dtype", c.checkpoint.export_dtype,
        "float32 or bfloat16: dtype of the last, model-only checkpoint");
  visit("checkpoint.initial_load_path", c.checkpoint.initial_load_path,
        "checkpoint file whose model (only) starts the run when checkpoint.folder holds none");
  visit("checkpoint.async_mode", c.checkpoint.async_mode, "disabled (checkpoints are written synchronously)");

  visit("activation_checkpoint.mode", c.activation_checkpoint.mode, "none, selective, full");
  visit("activation_checkpoint.selective_ac_option", c.activation_checkpoint.selective_ac_option,
        "op, or every n-th layer as a positive integer");
}

// Shortest text that reads back to the same value.
template <class T>
std::string to_text(const T& value) {
  if constexpr (std::is_same_v<T, bool>) {
    return value ? "true" : "false";
  } else {
    return fmt::format("{}", value);
  }
}

// Into `described`: every key as a typed option bound to its field in `config`, with the field's value as default.
void describe_options(JobConfig& config, po::options_description& described) {
  visit_keys(config, [&](const char* key, auto& field, const char* meaning) {
    using T = std::remove_reference_t<decltype(field)>;
    auto* value = po::value<T>(&field)->default_value(field, to_text(field));
    if constexpr (std::is_same_v<T, bool>) value->implicit_value(true, "true");
    described.add_options()(key, value, meaning);
  });
}

std::string toml_string(const std::string& text) {
  std::string quoted = "\"";
  for (const char c : text) {
    switch (c) {
      case '"':
        quoted += "\\\"";
        break;
      case '\\':
        quoted += "\\\\";
        break;
      case '\n':
        quoted += "\\n";
        break;
      case '\t':
        quoted += "\\t";
        break;
      default:
        quoted += c;
    }
  }
  return quoted + '"';
}

void require_one_of(const char* key, const std::string& value, std::initializer_list<const char*> allowed) {
  const bool known = std::any_of(allowed.begin(), allowed.end(), [&](const char* name) { return value == name; });
  DSV3_CHECK(known, "{} = '{}' is not one of {}", key, value, fmt::join(allowed, ", "));
}

void require_positive(const char* key, std::int64_t value) {
  DSV3_CHECK(value > 0, "{} = {} must be positive", key, value);
}

void require_existing(const char* key, const std::string& path) {
  DSV3_CHECK(!path.empty(), "{} is empty: name the file to read", key);
  DSV3_CHECK(std::filesystem::exists(path), "{} = '{}': no such file or directory", key, path);
}

void validate_optimizer(const JobConfig& c) {
  require_one_of("optimizer.name", c.optimizer.name, {"AdamW"});
  DSV3_CHECK(std::isfinite(c.optimizer.lr) && c.optimizer.lr > 0, "optimizer.lr = {} must be positive", c.optimizer.lr);
  DSV3_CHECK(c.optimizer.beta1 >= 0 && c.optimizer.beta1 < 1, "optimizer.beta1 = {} must be in [0, 1)",
             c.optimizer.beta1);
  DSV3_CHECK(c.optimizer.beta2 >= 0 && c.optimizer.beta2 < 1, "optimizer.beta2 = {} must be in [0, 1)",
             c.optimizer.beta2);
  DSV3_CHECK(c.optimizer.eps > 0, "optimizer.eps = {} must be positive", c.optimizer.eps);
  DSV3_CHECK(c.optimizer.weight_decay >= 0, "optimizer.weight_decay = {} must be ≥ 0", c.optimizer.weight_decay);
  // The schedule checks its keys against training.steps itself.
  LrSchedule({.training_steps = c.training.steps,
              .warmup_steps = c.lr_scheduler.warmup_steps,
              .decay_ratio = c.lr_scheduler.decay_ratio,
              .decay_type = parse_decay_type(c.lr_scheduler.decay_type),
              .min_lr_factor = c.lr_scheduler.min_lr_factor});
}

void validate_data(const JobConfig& c) {
  require_positive("training.local_batch_size", c.training.local_batch_size);
  require_positive("training.seq_len", c.training.seq_len);
  require_positive("training.steps", c.training.steps);
  DSV3_CHECK(std::isfinite(c.training.max_norm), "training.max_norm = {} must be finite", c.training.max_norm);
  DSV3_CHECK(c.training.seed >= 0, "training.seed = {} must be ≥ 0", c.training.seed);
  require_existing("training.dataset_path", c.training.dataset_path);
  const std::filesystem::path tokenizer = tokenizer_file(c);
  if (!tokenizer.empty()) {
    DSV3_CHECK(std::filesystem::is_regular_file(tokenizer), "{} = '{}': no tokenizer.json there",
               c.model.tokenizer_path.empty() ? "model.hf_assets_path" : "model.tokenizer_path", tokenizer.string());
  }
  if (c.validation.enable) {
    require_positive("validation.freq", c.validation.freq);
    DSV3_CHECK(c.validation.steps == -1 || c.validation.steps > 0,
               "validation.steps = {} must be positive, or -1 for the whole validation split", c.validation.steps);
    if (c.validation.dataset_path.empty()) {
      DSV3_CHECK(c.validation.holdout_fraction > 0 && c.validation.holdout_fraction < 1,
                 "validation.holdout_fraction = {} must be in (0, 1) when validation.dataset_path is empty",
                 c.validation.holdout_fraction);
    } else {
      require_existing("validation.dataset_path", c.validation.dataset_path);
    }
  }
}

void validate_checkpointing(const JobConfig& c) {
  require_positive("checkpoint.interval", c.checkpoint.interval);
  DSV3_CHECK(c.checkpoint.keep_latest_k >= 0, "checkpoint.keep_latest_k = {} must be ≥ 0 (0: keep all)",
             c.checkpoint.keep_latest_k);
  DSV3_CHECK(c.checkpoint.load_step >= -1, "checkpoint.load_step = {} must be a step ≥ 0, or -1 for the latest",
             c.checkpoint.load_step);
  DSV3_CHECK(c.checkpoint.export_dtype != "float16",
             "checkpoint.export_dtype = 'float16': dsv3 exports float32 or bfloat16 only");
  require_one_of("checkpoint.export_dtype", c.checkpoint.export_dtype, {"float32", "bfloat16"});
  require_one_of("checkpoint.async_mode", c.checkpoint.async_mode, {"disabled", "async", "async_with_pinned_mem"});
  DSV3_CHECK(c.checkpoint.async_mode == "disabled",
             "checkpoint.async_mode = '{}': asynchronous checkpoints are not built yet in this version of dsv3; set "
             "it to 'disabled'",
             c.checkpoint.async_mode);
  if (!c.checkpoint.initial_load_path.empty())
    require_existing("checkpoint.initial_load_path", c.checkpoint.initial_load_path);
  require_one_of("activation_checkpoint.mode", c.activation_checkpoint.mode, {"none", "selective", "full"});
  const std::string& option = c.activation_checkpoint.selective_ac_option;
  const bool every_nth_layer =
      !option.empty() && option.find_first_not_of("0123456789") == std::string::npos && std::stoll(option) > 0;
  DSV3_CHECK(option == "op" || every_nth_layer,
             "activation_checkpoint.selective_ac_option = '{}' must be 'op' or a positive integer", option);
}

// The degrees must multiply to the world size and divide what they split; then each degree above 1 other than
// data parallelism is refused, since only data parallelism is built so far.
int resolve_data_parallel_degree(const JobConfig& c, const model::ModelArgs& args, int world_size) {
  const auto& p = c.parallelism;
  require_positive("parallelism.data_parallel_replicate_degree", p.data_parallel_replicate_degree);
  require_positive("parallelism.tensor_parallel_degree", p.tensor_parallel_degree);
  require_positive("parallelism.pipeline_parallel_degree", p.pipeline_parallel_degree);
  require_positive("parallelism.context_parallel_degree", p.context_parallel_degree);
  require_positive("parallelism.expert_parallel_degree", p.expert_parallel_degree);
  require_positive("parallelism.expert_tensor_parallel_degree", p.expert_tensor_parallel_degree);
  require_one_of("parallelism.fsdp_reshard_after_forward", p.fsdp_reshard_after_forward,
                 {"default", "never", "always"});
  require_one_of(
      "parallelism.pipeline_parallel_schedule", p.pipeline_parallel_schedule,
      {"1F1B", "GPipe", "Interleaved1F1B", "LoopedBFS", "InterleavedZeroBubble", "ZBVZeroBubble", "DualPipeV"});

  const std::int64_t others = p.data_parallel_replicate_degree * p.tensor_parallel_degree * p.pipeline_parallel_degree *
                              p.context_parallel_degree;
  std::int64_t shard = p.data_parallel_shard_degree;
  if (shard == -1) {
    DSV3_CHECK(world_size % others == 0,
               "parallelism: data_parallel_replicate_degree × tensor × pipeline × context degrees = {} does not "
               "divide the {} MPI ranks, so data_parallel_shard_degree = -1 has no value",
               others, world_size);
    shard = world_size / others;
  }
  DSV3_CHECK(shard >= 1, "parallelism.data_parallel_shard_degree = {} must be positive or -1", shard);
  DSV3_CHECK(others * shard == world_size,
             "parallelism: data_parallel_replicate_degree {} × data_parallel_shard_degree {} × tensor_parallel_degree "
             "{} × pipeline_parallel_degree {} × context_parallel_degree {} = {} ranks, but the job has {} MPI ranks",
             p.data_parallel_replicate_degree, shard, p.tensor_parallel_degree, p.pipeline_parallel_degree,
             p.context_parallel_degree, others * shard, world_size);
  DSV3_CHECK(args.n_heads % p.tensor_parallel_degree == 0,
             "parallelism.tensor_parallel_degree = {} must divide the model's {} attention heads",
             p.tensor_parallel_degree, args.n_heads);
  DSV3_CHECK(args.n_routed_experts % p.expert_parallel_degree == 0,
             "parallelism.expert_parallel_degree = {} must divide the model's {} routed experts",
             p.expert_parallel_degree, args.n_routed_experts);
  DSV3_CHECK(args.n_layers >= p.pipeline_parallel_degree,
             "parallelism.pipeline_parallel_degree = {} exceeds the model's {} layers", p.pipeline_parallel_degree,
             args.n_layers);
  DSV3_CHECK(p.expert_tensor_parallel_degree == 1 || p.expert_tensor_parallel_degree == p.tensor_parallel_degree,
             "parallelism.expert_tensor_parallel_degree = {} must be 1 or tensor_parallel_degree = {}",
             p.expert_tensor_parallel_degree, p.tensor_parallel_degree);

  const auto refuse = [](const char* key, std::int64_t degree, const char* feature) {
    DSV3_CHECK(degree == 1, "{} = {}: {} is not built yet in this version of dsv3; set it to 1", key, degree, feature);
  };
  refuse("parallelism.tensor_parallel_degree", p.tensor_parallel_degree, "tensor parallelism");
  refuse("parallelism.pipeline_parallel_degree", p.pipeline_parallel_degree, "pipeline parallelism");
  refuse("parallelism.context_parallel_degree", p.context_parallel_degree, "context parallelism");
  refuse("parallelism.expert_parallel_degree", p.expert_parallel_degree, "expert parallelism");
  refuse("parallelism.expert_tensor_parallel_degree", p.expert_tensor_parallel_degree, "expert tensor parallelism");
  DSV3_CHECK(!p.enable_async_tensor_parallel,
             "parallelism.enable_async_tensor_parallel = true: tensor parallelism is not built yet in this version of "
             "dsv3; set it to false");
  return static_cast<int>(others * shard);
}

}  // namespace

JobConfig parse_job_config(const std::vector<std::string>& arguments) {
  JobConfig config;
  po::options_description described;
  describe_options(config, described);
  po::variables_map values;
  try {
    // No abbreviations: --training.step must not quietly mean --training.steps.
    const int style = po::command_line_style::default_style & ~po::command_line_style::allow_guessing;
    const po::positional_options_description no_positional_arguments;
    po::parsed_options parsed =
        po::command_line_parser(arguments).options(described).style(style).positional(no_positional_arguments).run();
    // A key given twice takes its last value, so a script can append overrides to a fixed command line.
    std::vector<po::option> last_of_each;
    for (auto option = parsed.options.rbegin(); option != parsed.options.rend(); ++option) {
      const bool seen = std::any_of(last_of_each.begin(), last_of_each.end(),
                                    [&](const po::option& kept) { return kept.string_key == option->string_key; });
      if (!seen) last_of_each.push_back(*option);
    }
    parsed.options.assign(last_of_each.rbegin(), last_of_each.rend());
    po::store(parsed, values);
  } catch (const po::error& error) {
    fail("command line: {}", error.what());
  }
  if (values.count("job.config_file") && !values["job.config_file"].defaulted()) {
    const std::string path = values["job.config_file"].as<std::string>();
    store_config_entries(read_config_file(path), path, described, values);
  }
  try {
    po::notify(values);
  } catch (const po::error& error) {
    fail("config: {}", error.what());
  }
  return config;
}

std::string job_config_help() {
  JobConfig defaults;
  po::options_description described("dsv3_train keys (in a TOML [section] or as --section.key=value)", 120);
  describe_options(defaults, described);
  std::ostringstream text;
  text << described;
  return text.str();
}

std::string to_toml(const JobConfig& config) {
  JobConfig copy = config;
  std::string toml;
  std::string section;
  visit_keys(copy, [&](const std::string key, auto& field, const char*) {
    if (key == "job.config_file") return;  // the file being written
    const auto dot = key.find('.');
    if (key.substr(0, dot) != section) {
      section = key.substr(0, dot);
      toml += fmt::format("{}[{}]\n", toml.empty() ? "" : "\n", section);
    }
    using T = std::remove_reference_t<decltype(field)>;
    if constexpr (std::is_same_v<T, std::string>) {
      toml += fmt::format("{} = {}\n", key.substr(dot + 1), toml_string(field));
    } else {
      toml += fmt::format("{} = {}\n", key.substr(dot + 1), to_text(field));
    }
  });
  return toml;
}

model::ModelArgs model_args(const JobConfig& config) {
  model::ModelArgs args = model::model_flavor(config.model.flavor);
  args.max_seq_len = config.training.seq_len;
  args.load_balance_coeff = config.moe.load_balance_coeff;
  return args;
}

std::filesystem::path tokenizer_file(const JobConfig& config) {
  if (!config.model.tokenizer_path.empty()) {
    const std::filesystem::path path(config.model.tokenizer_path);
    return std::filesystem::is_directory(path) ? path / "tokenizer.json" : path;
  }
  if (!config.model.hf_assets_path.empty())
    return std::filesystem::path(config.model.hf_assets_path) / "tokenizer.json";
  return {};
}

Device training_device(const JobConfig& c) {
  const std::string& device = c.training.device;
  DSV3_CHECK(device.empty() || device == "cpu" || device == "cuda",
             "training.device = '{}' is not one of cpu, cuda (or unset: cuda when a GPU is visible)", device);
  DSV3_CHECK(device != "cuda" || cuda_available(), "training.device = 'cuda': {}",
             cuda_built() ? "no GPU is visible to this process" : "this build of dsv3 has no CUDA backend");
  return device == "cuda" || (device.empty() && cuda_available()) ? Device::cuda : Device::cpu;
}

RunLayout validate_job_config(const JobConfig& c, int world_size) {
  DSV3_CHECK(world_size >= 1, "validate_job_config: world size {} must be positive", world_size);
  DSV3_CHECK(!c.job.dump_folder.empty(), "job.dump_folder is empty: name the folder for run outputs");
  require_one_of("model.name", c.model.name, {"deepseek_v3"});
  validate_data(c);
  const model::ModelArgs args = model_args(c);  // an unknown flavor fails here, naming model.flavor
  model::validate(args);
  training_device(c);
  validate_optimizer(c);
  DSV3_CHECK(c.moe.load_balance_coeff >= 0, "moe.load_balance_coeff = {} must be ≥ 0", c.moe.load_balance_coeff);
  DSV3_CHECK(c.moe.balance_loss_coeff >= 0, "moe.balance_loss_coeff = {} must be ≥ 0", c.moe.balance_loss_coeff);
  require_positive("metrics.log_freq", c.metrics.log_freq);
  DSV3_CHECK(c.metrics.peak_tflops >= 0, "metrics.peak_tflops = {} must be ≥ 0 (0: measure)", c.metrics.peak_tflops);
  validate_checkpointing(c);

  RunLayout layout;
  layout.device = training_device(c);
  layout.data_parallel_degree = resolve_data_parallel_degree(c, args, world_size);
  const std::int64_t per_micro_batch = c.training.local_batch_size * layout.data_parallel_degree;
  layout.global_batch_size = c.training.global_batch_size == -1 ? per_micro_batch : c.training.global_batch_size;
  DSV3_CHECK(layout.global_batch_size > 0 && layout.global_batch_size % per_micro_batch == 0,
             "training.global_batch_size = {} must be -1 or a positive multiple of training.local_batch_size × "
             "data-parallel degree = {} × {} = {}",
             c.training.global_batch_size, c.training.local_batch_size, layout.data_parallel_degree, per_micro_batch);
  layout.gradient_accumulation_steps = layout.global_batch_size / per_micro_batch;
  return layout;
}

}  // namespace dsv3::train
