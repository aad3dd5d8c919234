#include "dsv3/train/model_checkpoint.hpp"

#include "dsv3/core/error.hpp"
#include "dsv3/io/checksum.hpp"
#include "dsv3/io/hdf5.hpp"
#include "dsv3/model/parameters.hpp"
#include "dsv3/ops/elementwise.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <optional>

namespace dsv3::train {

namespace h5 = io::h5;
using nlohmann::json;

std::int64_t ModelDataset::numel() const {
  std::int64_t n = 1;
  for (const std::int64_t extent : shape) n *= extent;
  return n;
}

std::vector<ModelDataset> model_datasets(const model::ModelArgs& args, DType dtype) {
  std::vector<ModelDataset> datasets;
  for (const model::ParameterSpec& spec : model::parameter_specs(args)) {
    ModelDataset dataset{spec.name, {}, dtype};
    for (int axis = 0; axis < spec.shape.rank(); ++axis) dataset.shape.push_back(spec.shape[axis]);
    datasets.push_back(std::move(dataset));
  }
  for (std::int64_t layer = 0; layer < args.n_layers; ++layer) {
    if (args.is_moe_layer(layer)) datasets.push_back({expert_bias_name(layer), {args.n_routed_experts}, DType::f32});
  }
  return datasets;
}

model::ModelArgs model_args_from_json(const std::string& text, const std::string& source) {
  const json stored = json::parse(text, nullptr, /*allow_exceptions=*/false);
  DSV3_CHECK(!stored.is_discarded() && stored.is_object(), "{}: model_args is not a JSON object", source);
  const auto field = [&](const char* key) -> const json& {
    DSV3_CHECK(stored.contains(key), "{}: model_args lacks '{}'", source, key);
    return stored[key];
  };
  model::ModelArgs a;
  try {
    a.flavor = field("flavor").get<std::string>();
    a.vocab_size = field("vocab_size").get<std::int64_t>();
    a.dim = field("dim").get<std::int64_t>();
    a.inter_dim = field("inter_dim").get<std::int64_t>();
    a.moe_inter_dim = field("moe_inter_dim").get<std::int64_t>();
    a.n_layers = field("n_layers").get<std::int64_t>();
    a.n_dense_layers = field("n_dense_layers").get<std::int64_t>();
    a.n_heads = field("n_heads").get<std::int64_t>();
    a.n_routed_experts = field("n_routed_experts").get<std::int64_t>();
    a.n_shared_experts = field("n_shared_experts").get<std::int64_t>();
    a.n_activated_experts = field("n_activated_experts").get<std::int64_t>();
    a.n_expert_groups = field("n_expert_groups").get<std::int64_t>();
    a.n_limited_groups = field("n_limited_groups").get<std::int64_t>();
    a.score_func = field("score_func").get<std::string>() == "sigmoid" ? model::ScoreFunction::sigmoid
                                                                         : model::ScoreFunction::softmax;
    a.route_norm = field("route_norm").get<bool>();
    a.route_scale = field("route_scale").get<double>();
    a.load_balance_coeff = field("load_balance_coeff").get<double>();
    a.q_lora_rank = field("q_lora_rank").get<std::int64_t>();
    a.kv_lora_rank = field("kv_lora_rank").get<std::int64_t>();
    a.qk_nope_head_dim = field("qk_nope_head_dim").get<std::int64_t>();
    a.qk_rope_head_dim = field("qk_rope_head_dim").get<std::int64_t>();
    a.v_head_dim = field("v_head_dim").get<std::int64_t>();
    a.mask = field("mask").get<std::string>() == "causal" ? model::MaskType::causal
                                                          : model::MaskType::document_causal;
    a.max_seq_len = field("max_seq_len").get<std::int64_t>();
    a.original_seq_len = field("original_seq_len").get<std::int64_t>();
    a.rope_theta = field("rope_theta").get<double>();
    a.rope_factor = field("rope_factor").get<double>();
    a.beta_fast = field("beta_fast").get<double>();
    a.beta_slow = field("beta_slow").get<double>();
    a.mscale = field("mscale").get<double>();
    a.yarn = field("yarn").get<bool>();
    a.norm_eps = field("norm_eps").get<double>();
    a.init = field("init").get<std::string>() == "paper" ? model::InitScheme::paper : model::InitScheme::torchtitan;
  } catch (const json::exception& error) {
    fail("{}: model_args: a field of the wrong type: {}", source, error.what());
  }
  DSV3_CHECK(json::parse(model_args_json(a)) == stored, "{}: model_args holds values dsv3 does not know: {}", source,
             text);
  model::validate(a);
  return a;
}

// --- writing ---

struct ModelCheckpointWriter::Open {
  h5::File file;
  std::vector<h5::Dataset> datasets;
  std::vector<io::Checksum> checksums;
};

ModelCheckpointWriter::ModelCheckpointWriter(const std::filesystem::path& path, MPI_Comm comm,
                                             const CheckpointContents& contents, std::vector<ModelDataset> datasets)
    : datasets_(std::move(datasets)), comm_(comm) {
  DSV3_CHECK(contents.model_only, "ModelCheckpointWriter writes model-only checkpoints");
  h5::File file = h5::File::open(path, h5::File::Mode::create, comm);
  write_checkpoint_attributes(file, 0, contents);
  std::vector<h5::Dataset> handles;
  for (const ModelDataset& dataset : datasets_)
    handles.push_back(file.create_dataset("/model/" + dataset.name, dataset.dtype, dataset.shape));
  open_ = std::make_unique<Open>(Open{std::move(file), std::move(handles), std::vector<io::Checksum>(datasets_.size())});
}

ModelCheckpointWriter::~ModelCheckpointWriter() = default;

void ModelCheckpointWriter::write(std::size_t index, std::int64_t begin, const Tensor& values) {
  const ModelDataset& dataset = datasets_.at(index);
  DSV3_CHECK(begin >= 0 && begin + values.numel() <= dataset.numel(),
             "ModelCheckpointWriter: elements [{}, {}) of '/model/{}' of {}", begin, begin + values.numel(),
             dataset.name, dataset.numel());
  Tensor stored = values;
  if (values.dtype() != dataset.dtype) {
    stored = Tensor::empty(values.shape(), dataset.dtype, values.device());
    ops::convert(stored, values);
  }
  open_->checksums[index].add(stored.raw(), dataset.dtype, begin, stored.numel());
  open_->datasets[index].write_elements(begin, stored.numel(), dataset.dtype, stored.raw(), h5::Transfer::independent);
}

void ModelCheckpointWriter::finish() {
  io::all_reduce(open_->checksums, comm_);
  for (std::size_t i = 0; i < datasets_.size(); ++i)
    open_->datasets[i].write_string_attribute("checksum", open_->checksums[i].hex());
  open_->datasets.clear();
  open_->file.flush();
  open_.reset();
}

// --- reading ---

struct ModelCheckpointReader::Open {
  h5::File file;
  std::map<std::string, h5::Dataset> datasets;
  std::map<std::string, io::Checksum> checksums;
};

ModelCheckpointReader::ModelCheckpointReader(const std::filesystem::path& path) : path_(path) {
  const std::string name = path.string();
  h5::File file = h5::File::open(path, h5::File::Mode::read);
  check_checkpoint_schema(file, name);
  args_ = model_args_from_json(file.read_string_attribute("model_args"), name);
  dtype_ = parse_checkpoint_dtype(file.read_string_attribute("dtype"), name + ": attribute 'dtype' of /");
  datasets_ = model_datasets(args_, dtype_);
  open_ = std::make_unique<Open>(Open{std::move(file), {}, {}});
}

ModelCheckpointReader::~ModelCheckpointReader() = default;

Tensor ModelCheckpointReader::read(const std::string& name, std::int64_t begin, std::int64_t count) {
  auto found = open_->datasets.find(name);
  if (found == open_->datasets.end()) {
    const auto spec = std::find_if(datasets_.begin(), datasets_.end(), [&](const auto& d) { return d.name == name; });
    DSV3_CHECK(spec != datasets_.end(), "{}: the model has no dataset '/model/{}'", path_.string(), name);
    h5::Dataset dataset = open_->file.open_dataset("/model/" + name);
    DSV3_CHECK(dataset.shape() == spec->shape, "{}: dataset '/model/{}' has shape [{}] but the model args give [{}]",
               path_.string(), name, fmt::join(dataset.shape(), ", "), fmt::join(spec->shape, ", "));
    const std::optional<DType> stored = dataset.dtype();
    DSV3_CHECK(stored && is_floating(*stored) && *stored != DType::fp8_e4m3,
               "{}: dataset '/model/{}' does not hold float32, float64 or bfloat16 elements", path_.string(), name);
    found = open_->datasets.emplace(name, std::move(dataset)).first;
  }
  const DType stored = *found->second.dtype();
  Tensor buffer = Tensor::empty(Shape{count}, stored);
  found->second.read_elements(begin, count, stored, buffer.raw(), h5::Transfer::independent);
  open_->checksums[name].add(buffer.raw(), stored, begin, count);
  if (stored == DType::f32) return buffer;
  Tensor values = Tensor::empty(Shape{count}, DType::f32);
  ops::convert(values, buffer);
  return values;
}

void ModelCheckpointReader::verify(MPI_Comm comm) {
  std::vector<io::Checksum> checksums;
  for (const ModelDataset& dataset : datasets_) checksums.push_back(open_->checksums[dataset.name]);
  io::all_reduce(checksums, comm);
  for (std::size_t i = 0; i < datasets_.size(); ++i) {
    const std::string& name = datasets_[i].name;
    const std::string stored = open_->file.open_dataset("/model/" + name).read_string_attribute("checksum");
    DSV3_CHECK(stored == checksums[i].hex(),
               "{}: dataset '/model/{}': the data's checksum {} differs from the stored {}: the file is corrupted",
               path_.string(), name, checksums[i].hex(), stored);
  }
}

}  // namespace dsv3::train
