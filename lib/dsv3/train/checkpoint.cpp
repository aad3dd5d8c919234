#include "dsv3/train/checkpoint.hpp"

#include "dsv3/core/error.hpp"
#include "dsv3/io/checksum.hpp"
#include "dsv3/io/hdf5.hpp"
#include "dsv3/ops/elementwise.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <optional>

namespace dsv3::train {

namespace h5 = io::h5;
using nlohmann::json;

namespace {

constexpr const char* kChecksumAlgorithm =
    "per dataset: 'checksum' = hex(S, W), S = sum of v_i, W = sum of (i + 1)·v_i, both mod 2^61 - 1, over the "
    "stored bits v_i of the elements in row-major order (dsv3 io/checksum.hpp)";

// Model args that may change between runs of one model: the flavor's name, the RoPE tables' length (computed, not
// stored), the bias update speed (a training setting) and the initialisation (only the first weights).
constexpr std::array<const char*, 4> kArgsNotCompared = {"flavor", "max_seq_len", "load_balance_coeff", "init"};
// The model args that decide the parameters' shapes. Initial weights (a model-only checkpoint) need only these to
// agree: a run may fine-tune the weights of a model with another norm epsilon, mask or routing (the released
// DeepSeek-V3 has rms_norm_eps 1e-6 and a causal mask where flavor 671B has 1e-5 and document-causal).
constexpr std::array<const char*, 14> kShapeArgs = {
    "vocab_size",         "dim",          "inter_dim",        "moe_inter_dim",    "n_layers",
    "n_dense_layers",     "n_heads",      "n_routed_experts", "n_shared_experts", "q_lora_rank",
    "kv_lora_rank",       "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"};

template <std::size_t N>
bool listed(const std::array<const char*, N>& keys, const std::string& key) {
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

// One dataset of the checkpoint as this rank sees it: its name and logical shape, and the elements it holds,
// [begin, begin + local.numel()) of the flattened tensor (local undefined: none).
struct Entry {
  std::string name;  // without the leading '/'
  std::vector<std::int64_t> shape;
  DType dtype = DType::f32;  // to write: the stored dtype; to read: f32 for any float dtype, or i64
  Tensor local;              // a 1-D view into the trainer's buffers
  std::int64_t begin = 0;
  bool counted = false;  // this rank writes these elements and counts them in the checksum (one rank per element)
};

std::vector<std::int64_t> extents(const Shape& shape) {
  std::vector<std::int64_t> result;
  for (int axis = 0; axis < shape.rank(); ++axis) result.push_back(shape[axis]);
  return result;
}

// Every dataset of a checkpoint, in the same order on every rank.
std::vector<Entry> checkpoint_entries(const CheckpointState& state, bool model_only, DType dtype) {
  const parallel::ShardLayout& layout = *state.layout;
  std::vector<Entry> entries;
  const auto shards = [&](std::string name, std::size_t parameter, const Tensor& arena) {
    Entry entry;
    entry.name = std::move(name);
    entry.shape = extents(layout.specs()[parameter].shape);
    entry.dtype = dtype;
    const parallel::Placement& place = layout.placement(parameter);
    if (const auto piece = layout.piece(parameter, state.group_ranks[static_cast<int>(place.group)])) {
      entry.local = arena.rows(piece->shard_offset, piece->shard_offset + (piece->end - piece->begin));
      entry.begin = piece->begin;
      entry.counted = state.writes_shards;
    }
    entries.push_back(std::move(entry));
  };
  const auto whole = [&](std::string name, const Tensor& tensor, DType stored) {
    entries.push_back({std::move(name), extents(tensor.shape()), stored, tensor.view(Shape{tensor.numel()}), 0,
                       state.writes_whole});
  };
  const auto& specs = layout.specs();
  for (std::size_t i = 0; i < specs.size(); ++i) shards("model/" + specs[i].name, i, state.params);
  for (std::size_t layer = 0; layer < state.expert_biases.size(); ++layer) {
    if (state.expert_biases[layer].defined())
      whole("model/" + expert_bias_name(static_cast<std::int64_t>(layer)), state.expert_biases[layer], DType::f32);
  }
  if (model_only) return entries;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    shards("optim/" + specs[i].name + "/exp_avg", i, state.exp_avg);
    shards("optim/" + specs[i].name + "/exp_avg_sq", i, state.exp_avg_sq);
  }
  for (std::size_t layer = 0; layer < state.tokens_per_expert.size(); ++layer) {
    if (state.tokens_per_expert[layer].defined())
      whole(fmt::format("train/layers.{}.moe.tokens_per_expert", layer), state.tokens_per_expert[layer], DType::i64);
  }
  return entries;
}

// The elements of `tensor` in `dtype`, on the host: HDF5 reads and writes host memory.
Tensor host_copy(const Tensor& tensor, DType dtype) {
  const Tensor host = tensor.device() == Device::cpu ? tensor : tensor.to(Device::cpu);
  if (host.dtype() == dtype) return host;
  Tensor result = Tensor::empty(host.shape(), dtype);
  ops::convert(result, host);
  return result;
}

// local ← buffer (host, the file's dtype), converted to local's dtype and copied to its device.
void store_read_elements(const Tensor& local, const Tensor& buffer) {
  if (local.device() == Device::cpu) {
    ops::convert(local, buffer);
    return;
  }
  local.copy_from(host_copy(buffer, local.dtype()));
}

// A non-null address for ranks that transfer nothing (HDF5 refuses a null buffer in some versions).
void* no_elements() {
  static std::byte dummy;
  return &dummy;
}

// The stored model args against the run's: every compared key must agree, or with `shapes_only` the shape keys,
// the others' differences being returned as "key file → run" items for the log.
std::vector<std::string> check_model_args(const std::string& file, const std::string& stored_text,
                                          const model::ModelArgs& args, bool shapes_only) {
  const json stored = json::parse(stored_text, nullptr, /*allow_exceptions=*/false);
  DSV3_CHECK(!stored.is_discarded() && stored.is_object(), "{}: attribute 'model_args' of / is not a JSON object",
             file);
  const json run = json::parse(model_args_json(args));
  std::vector<std::string> differences;
  for (const auto& [key, value] : run.items()) {
    if (listed(kArgsNotCompared, key)) continue;
    const bool required = !shapes_only || listed(kShapeArgs, key);
    if (!required && (!stored.contains(key) || stored[key] != value)) {
      differences.push_back(fmt::format("{} {} → {}", key, stored.contains(key) ? stored[key].dump() : "?",
                                        value.dump()));
      continue;
    }
    DSV3_CHECK(stored.contains(key), "{}: attribute 'model_args' of / lacks '{}'", file, key);
    DSV3_CHECK(stored[key] == value,
               "{}: a checkpoint of another model: model_args {} = {} in the file but {} in this run (model '{}' "
               "there)",
               file, key, stored[key].dump(), value.dump(), stored.value("flavor", std::string("?")));
  }
  return differences;
}

// Fault injection for tests/train/e2e_checkpoint_fault.sh: while writing the checkpoint of step
// DSV3_TEST_CHECKPOINT_STALL_STEP, every rank stops half-way through the datasets, writes its process id to
// $DSV3_TEST_CHECKPOINT_STALL_DIR/rank<R>.pid and waits there to be killed.
void stall_for_fault_test(std::int64_t step, MPI_Comm comm) {
  const char* stall_step = std::getenv("DSV3_TEST_CHECKPOINT_STALL_STEP");
  const char* stall_dir = std::getenv("DSV3_TEST_CHECKPOINT_STALL_DIR");
  if (!stall_step || !stall_dir || std::atoll(stall_step) != step) return;
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  std::ofstream(std::filesystem::path(stall_dir) / fmt::format("rank{}.pid", rank)) << getpid() << "\n";
  for (;;) sleep(1);
}

}  // namespace

std::string model_args_json(const model::ModelArgs& a) {
  const json args = {
      {"flavor", a.flavor},
      {"vocab_size", a.vocab_size},
      {"dim", a.dim},
      {"inter_dim", a.inter_dim},
      {"moe_inter_dim", a.moe_inter_dim},
      {"n_layers", a.n_layers},
      {"n_dense_layers", a.n_dense_layers},
      {"n_heads", a.n_heads},
      {"n_routed_experts", a.n_routed_experts},
      {"n_shared_experts", a.n_shared_experts},
      {"n_activated_experts", a.n_activated_experts},
      {"n_expert_groups", a.n_expert_groups},
      {"n_limited_groups", a.n_limited_groups},
      {"score_func", a.score_func == model::ScoreFunction::softmax ? "softmax" : "sigmoid"},
      {"route_norm", a.route_norm},
      {"route_scale", a.route_scale},
      {"load_balance_coeff", a.load_balance_coeff},
      {"q_lora_rank", a.q_lora_rank},
      {"kv_lora_rank", a.kv_lora_rank},
      {"qk_nope_head_dim", a.qk_nope_head_dim},
      {"qk_rope_head_dim", a.qk_rope_head_dim},
      {"v_head_dim", a.v_head_dim},
      {"mask", a.mask == model::MaskType::causal ? "causal" : "document_causal"},
      {"max_seq_len", a.max_seq_len},
      {"original_seq_len", a.original_seq_len},
      {"rope_theta", a.rope_theta},
      {"rope_factor", a.rope_factor},
      {"beta_fast", a.beta_fast},
      {"beta_slow", a.beta_slow},
      {"mscale", a.mscale},
      {"yarn", a.yarn},
      {"norm_eps", a.norm_eps},
      {"init", a.init == model::InitScheme::torchtitan ? "torchtitan" : "paper"},
  };
  return args.dump();
}

std::string expert_bias_name(std::int64_t layer) { return fmt::format("layers.{}.moe.expert_bias", layer); }

void write_checkpoint_attributes(const h5::File& file, std::int64_t step, const CheckpointContents& contents) {
  file.write_string_attribute("format", "dsv3 checkpoint");
  file.write_int_attribute("schema_version", kCheckpointSchemaVersion);
  file.write_int_attribute("step", step);
  file.write_int_attribute("model_only", contents.model_only ? 1 : 0);
  file.write_string_attribute("dtype", checkpoint_dtype_name(contents.dtype));
  file.write_string_attribute("model_args", contents.model_args);
  file.write_string_attribute("config", contents.config);
  file.write_string_attribute("checksum_algorithm", kChecksumAlgorithm);
}

void check_checkpoint_schema(const h5::File& file, const std::string& name) {
  DSV3_CHECK(file.has_attribute("schema_version"), "{}: not a dsv3 checkpoint (no attribute 'schema_version' on /)",
             name);
  const std::int64_t version = file.read_int_attribute("schema_version");
  DSV3_CHECK(version == kCheckpointSchemaVersion, "{}: checkpoint schema version {}, but this dsv3 reads version {}",
             name, version, kCheckpointSchemaVersion);
}

std::string checkpoint_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "float32";
    case DType::f64:
      return "float64";
    case DType::bf16:
      return "bfloat16";
    default:
      fail("checkpoint: {} is not a stored dtype (float32, float64, bfloat16)", dtype_name(dtype));
  }
}

DType parse_checkpoint_dtype(const std::string& name, const std::string& what) {
  for (const DType dtype : {DType::f32, DType::f64, DType::bf16}) {
    if (name == checkpoint_dtype_name(dtype)) return dtype;
  }
  fail("{}: dtype '{}' is not one of float32, float64, bfloat16", what, name);
}

void write_checkpoint(const std::filesystem::path& path, MPI_Comm comm, const CheckpointState& state,
                      const TrainingProgress& progress, const CheckpointContents& contents) {
  DSV3_CHECK(contents.dtype == DType::f32 || contents.dtype == DType::f64 || contents.dtype == DType::bf16,
             "write_checkpoint: {} is not a checkpoint dtype (float32, float64, bfloat16)", dtype_name(contents.dtype));
  const std::vector<Entry> entries = checkpoint_entries(state, contents.model_only, contents.dtype);
  // The checksums first: they are attributes, written collectively with the same value on every rank.
  std::vector<Tensor> stored(entries.size());
  std::vector<io::Checksum> checksums(entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const Entry& entry = entries[i];
    if (!entry.counted || !entry.local.defined()) continue;
    stored[i] = host_copy(entry.local, entry.dtype);
    checksums[i].add(stored[i].raw(), entry.dtype, entry.begin, stored[i].numel());
  }
  io::all_reduce(checksums, comm);

  const h5::File file = h5::File::open(path, h5::File::Mode::create, comm);
  write_checkpoint_attributes(file, progress.step, contents);
  if (!contents.model_only) {
    const h5::Group train = file.create_group("/train");
    train.write_int_attribute("step", progress.step);
    train.write_int_attribute("seed", progress.seed);
    train.write_int_attribute("data_loader.epoch", progress.data_loader.epoch);
    train.write_int_attribute("data_loader.position", progress.data_loader.position);
    train.write_int_attribute("data_loader.seed", static_cast<std::int64_t>(progress.data_loader.seed));
    train.write_int_attribute("data_loader.windows_per_epoch", progress.data_loader.windows_per_epoch);
    train.write_int_attribute("lr_schedule.step", progress.step);
  }
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (i == entries.size() / 2) stall_for_fault_test(progress.step, comm);
    const Entry& entry = entries[i];
    const h5::Dataset dataset = file.create_dataset("/" + entry.name, entry.dtype, entry.shape);
    dataset.write_string_attribute("checksum", checksums[i].hex());
    const bool writes = stored[i].defined();
    dataset.write_elements(entry.begin, writes ? stored[i].numel() : 0, entry.dtype,
                           writes ? stored[i].raw() : no_elements());
  }
  file.flush();  // with the MPI-IO driver, MPI_File_sync on every rank: the data is on disk when this returns
}

TrainingProgress read_checkpoint(const std::filesystem::path& path, MPI_Comm comm, const CheckpointState& state,
                                 const model::ModelArgs& args, bool model_only) {
  const std::string name = path.string();
  const h5::File file = h5::File::open(path, h5::File::Mode::read, comm);
  check_checkpoint_schema(file, name);
  TrainingProgress progress;
  progress.model_args_differences = check_model_args(name, file.read_string_attribute("model_args"), args,
                                                     /*shapes_only=*/model_only);
  DSV3_CHECK(model_only || file.read_int_attribute("model_only") == 0,
             "{}: a model-only checkpoint (no optimizer state, no progress): it can give initial weights "
             "(checkpoint.initial_load_path) but cannot resume training",
             name);

  const std::vector<Entry> entries = checkpoint_entries(state, model_only, DType::f32);
  std::vector<io::Checksum> checksums(entries.size());
  std::vector<std::string> stored_checksums(entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const Entry& entry = entries[i];
    const h5::Dataset dataset = file.open_dataset("/" + entry.name);  // an error naming file and dataset if missing
    const std::vector<std::int64_t> shape = dataset.shape();
    DSV3_CHECK(shape == entry.shape, "{}: dataset '/{}' has shape [{}] but this run's model needs [{}]", name,
               entry.name, fmt::join(shape, ", "), fmt::join(entry.shape, ", "));
    const std::optional<DType> dtype = dataset.dtype();
    const bool floating = entry.dtype != DType::i64;
    DSV3_CHECK(dtype && (floating ? is_floating(*dtype) && *dtype != DType::fp8_e4m3 : *dtype == DType::i64),
               "{}: dataset '/{}' holds {} elements, not {}", name, entry.name,
               dtype ? dtype_name(*dtype) : "unsupported", floating ? "float32, float64 or bfloat16" : "int64");
    stored_checksums[i] = dataset.read_string_attribute("checksum");
    // Read in the stored dtype (the checksum is over the stored bits), then convert to the trainer's.
    const std::int64_t count = entry.local.defined() ? entry.local.numel() : 0;
    const bool direct = count > 0 && entry.local.dtype() == *dtype && entry.local.device() == Device::cpu;
    const Tensor buffer = count == 0 ? Tensor() : direct ? entry.local : Tensor::empty(Shape{count}, *dtype);
    dataset.read_elements(entry.begin, count, *dtype, count > 0 ? buffer.raw() : no_elements());
    if (entry.counted && count > 0) checksums[i].add(buffer.raw(), *dtype, entry.begin, count);
    if (count > 0 && !direct) store_read_elements(entry.local, buffer);
  }
  io::all_reduce(checksums, comm);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    DSV3_CHECK(checksums[i].hex() == stored_checksums[i],
               "{}: dataset '/{}': the data's checksum {} differs from the stored {}: the file is corrupted", name,
               entries[i].name, checksums[i].hex(), stored_checksums[i]);
  }

  if (model_only) return progress;
  const h5::Group train = file.open_group("/train");
  progress.step = train.read_int_attribute("step");
  progress.seed = train.read_int_attribute("seed");
  progress.data_loader.epoch = train.read_int_attribute("data_loader.epoch");
  progress.data_loader.position = train.read_int_attribute("data_loader.position");
  progress.data_loader.seed = static_cast<std::uint64_t>(train.read_int_attribute("data_loader.seed"));
  progress.data_loader.windows_per_epoch = train.read_int_attribute("data_loader.windows_per_epoch");
  return progress;
}

bool is_model_only_checkpoint(const std::filesystem::path& path) {
  const h5::File file = h5::File::open(path, h5::File::Mode::read);
  return file.has_attribute("model_only") && file.read_int_attribute("model_only") != 0;
}

}  // namespace dsv3::train
