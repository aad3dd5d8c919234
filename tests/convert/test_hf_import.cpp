// Import of Hugging Face checkpoints written here: FP8 weights over several 128×128 blocks dequantized exactly, the
// MTP layer skipped, a bf16 checkpoint; and every bad input refused with an error naming the file and tensor.
#include "dsv3/hf/hf_config.hpp"
#include "dsv3/hf/hf_import.hpp"
#include "dsv3/hf/hf_names.hpp"
#include "dsv3/io/safetensors.hpp"
#include "dsv3/ops/fp8.hpp"
#include "dsv3/train/model_checkpoint.hpp"
#include "io/io_testing.hpp"
#include "support/testing.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <map>

using namespace dsv3;
using dsv3::testing::ScratchDirectory;
using io::SafetensorsDType;

namespace {

// Small, but with weights of more than one FP8 block along both axes (160 = 128 + 32).
hf::HfConfig tiny_config() {
  hf::HfConfig config;
  model::ModelArgs& a = config.args;
  a.flavor = "hf:deepseek_v3";
  a.vocab_size = 64;
  a.dim = 160;
  a.inter_dim = 136;
  a.moe_inter_dim = 40;
  a.n_layers = 2;
  a.n_dense_layers = 1;
  a.n_heads = 2;
  a.n_routed_experts = 4;
  a.n_shared_experts = 1;
  a.n_activated_experts = 2;
  a.kv_lora_rank = 16;
  a.qk_nope_head_dim = 8;
  a.qk_rope_head_dim = 4;
  a.v_head_dim = 8;
  a.mscale = 1.0;
  a.norm_eps = 1e-6;
  a.original_seq_len = 16;
  a.rope_factor = 4;
  config.max_position_embeddings = 64;
  config.args.max_seq_len = 64;
  return config;
}

struct HfTensor {
  io::SafetensorsTensorSpec spec;
  Tensor data;  // of the spec's dtype
};

// A checkpoint of random weights; with fp8, the projections quantized. `expected` gets each HF tensor's values as
// the import must produce them.
std::vector<HfTensor> random_tensors(const hf::HfConfig& config, bool fp8, std::map<std::string, Tensor>& expected) {
  testing::Rng rng(42);
  std::vector<HfTensor> tensors;
  for (const train::ModelDataset& dataset : train::model_datasets(config.args, DType::f32)) {
    std::vector<std::int64_t> shape = dataset.shape;
    if (dataset.name.find(".moe.experts.") != std::string::npos) shape.erase(shape.begin());
    for (const std::string& name : hf::hf_tensor_names(dataset.name, config.args.n_routed_experts)) {
      Tensor values = testing::random_uniform(Shape(shape), DType::f32, rng);
      if (fp8 && shape.size() == 2 && name.find("_proj") != std::string::npos) {
        const Tensor q = Tensor::empty(Shape(shape), DType::fp8_e4m3);
        const Tensor scale = Tensor::empty(Shape{(shape[0] + 127) / 128, (shape[1] + 127) / 128}, DType::f32);
        ops::fp8_quantize_blocks(q, scale, values);
        ops::fp8_dequantize_blocks(values, q, scale);
        tensors.push_back({{name, SafetensorsDType::F8_E4M3, shape}, q});
        tensors.push_back({{hf::hf_scale_name(name), SafetensorsDType::F32, {scale.shape()[0], scale.shape()[1]}}, scale});
      } else {
        tensors.push_back({{name, SafetensorsDType::F32, shape}, values});
      }
      expected[name] = values;
    }
  }
  return tensors;
}

void write_folder(const std::filesystem::path& folder, const hf::HfConfig& config, const std::vector<HfTensor>& tensors) {
  std::filesystem::create_directories(folder);
  std::ofstream(folder / "config.json") << hf::hf_config_json(config);
  std::vector<io::SafetensorsTensorSpec> specs;
  std::vector<std::span<const std::byte>> data;
  for (const HfTensor& tensor : tensors) {
    specs.push_back(tensor.spec);
    data.emplace_back(static_cast<const std::byte*>(tensor.data.raw()), tensor.data.nbytes());
  }
  write_safetensors(folder / "model.safetensors", specs, data);
}

// Rank 0 writes, everyone waits.
void write_on_rank0(const std::filesystem::path& folder, const hf::HfConfig& config,
                    const std::vector<HfTensor>& tensors) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) write_folder(folder, config, tensors);
  MPI_Barrier(MPI_COMM_WORLD);
}

hf::ImportOptions import_options(const std::filesystem::path& folder, const std::filesystem::path& output) {
  hf::ImportOptions options;
  options.hf_dir = folder;
  options.output = output;
  options.progress = false;
  options.chunk_bytes = 4096;
  return options;
}

}  // namespace

TEST_CASE("import: FP8 blocks dequantized exactly, MTP layer skipped, experts stacked in order") {
  ScratchDirectory dir("hf-import");
  hf::HfConfig config = tiny_config();
  config.fp8 = true;
  config.mtp_layers = 1;
  std::map<std::string, Tensor> expected;
  std::vector<HfTensor> tensors = random_tensors(config, true, expected);
  testing::Rng rng(3);
  tensors.push_back({{"model.layers.2.enorm.weight", SafetensorsDType::F32, {160}},
                     testing::random_uniform(Shape{160}, DType::f32, rng)});  // the MTP layer
  write_on_rank0(dir / "hf", config, tensors);

  for (const DType dtype : {DType::f32, DType::bf16}) {
    hf::ImportOptions options = import_options(dir / "hf", dir / "model.h5");
    options.dtype = dtype;
    hf::import_hf_checkpoint(options, MPI_COMM_WORLD);
    train::ModelCheckpointReader reader(options.output);
    CHECK(train::model_args_json(reader.args()) == train::model_args_json(config.args));
    CHECK(reader.dtype() == dtype);
    for (const train::ModelDataset& dataset : reader.datasets()) {
      CAPTURE(dataset.name);
      const Tensor values = reader.read(dataset.name, 0, dataset.numel());
      std::int64_t offset = 0;
      for (const std::string& name : hf::hf_tensor_names(dataset.name, config.args.n_routed_experts)) {
        const Tensor& want = expected.at(name);
        for (std::int64_t i = 0; i < want.numel(); ++i) {
          const float w = want.data<float>()[i];
          const float stored = dataset.dtype == DType::bf16 ? bf16_to_f32(f32_to_bf16(w)) : w;
          if (values.data<float>()[offset + i] != stored) {
            FAIL_CHECK(name, " element ", i, ": ", values.data<float>()[offset + i], " instead of ", stored);
            break;
          }
        }
        offset += want.numel();
      }
    }
    reader.verify(MPI_COMM_SELF);
    MPI_Barrier(MPI_COMM_WORLD);
  }
}

TEST_CASE("import: bad checkpoints are refused, naming the file and the tensor") {
  ScratchDirectory dir("hf-import-bad");
  const hf::HfConfig config = [] {
    hf::HfConfig c = tiny_config();
    c.fp8 = true;
    return c;
  }();
  std::map<std::string, Tensor> expected;
  const std::vector<HfTensor> good = random_tensors(config, true, expected);
  int case_number = 0;
  const auto import_changed = [&](const std::function<void(std::vector<HfTensor>&)>& change) {
    std::vector<HfTensor> tensors = good;
    change(tensors);
    const std::filesystem::path folder = dir / ("case" + std::to_string(++case_number));
    write_on_rank0(folder, config, tensors);
    hf::import_hf_checkpoint(import_options(folder, dir / "out.h5"), MPI_COMM_WORLD);
  };
  const auto find = [](std::vector<HfTensor>& tensors, const std::string& name) -> HfTensor& {
    for (HfTensor& tensor : tensors) {
      if (tensor.spec.name == name) return tensor;
    }
    FAIL("no tensor ", name);
    return tensors.front();
  };
  CHECK_ERROR_CONTAINS(import_changed([&](auto& t) { std::erase_if(t, [](auto& x) { return x.spec.name == "model.norm.weight"; }); }),
                       "case1", "no tensor 'model.norm.weight'");
  CHECK_ERROR_CONTAINS(import_changed([&](auto& t) {
                         HfTensor& o = find(t, "model.layers.0.self_attn.o_proj.weight");
                         o.spec.shape = {o.spec.shape[1], o.spec.shape[0]};
                       }),
                       "model.safetensors", "'model.layers.0.self_attn.o_proj.weight' has shape [16, 160]",
                       "config.json gives [160, 16]");
  CHECK_ERROR_CONTAINS(import_changed([&](auto& t) {
                         HfTensor& scale = find(t, "model.layers.1.mlp.experts.2.up_proj.weight_scale_inv");
                         scale.spec.shape = {2, 1};
                       }),
                       "model.safetensors", "scale tensor 'model.layers.1.mlp.experts.2.up_proj.weight_scale_inv'",
                       "needs F32 [1, 2]");
  CHECK_ERROR_CONTAINS(import_changed([&](auto& t) {
                         std::erase_if(t, [](auto& x) { return x.spec.name == "model.layers.0.mlp.gate_proj.weight_scale_inv"; });
                       }),
                       "F8_E4M3 tensor 'model.layers.0.mlp.gate_proj.weight' has no scale tensor");
  CHECK_ERROR_CONTAINS(import_changed([&](auto& t) {
                         testing::Rng rng(1);
                         t.push_back({{"model.layers.0.mlp.bias", SafetensorsDType::F32, {4}},
                                      testing::random_uniform(Shape{4}, DType::f32, rng)});
                       }),
                       "tensor 'model.layers.0.mlp.bias' is not part of the model");
  CHECK_ERROR_CONTAINS(import_changed([&](auto& t) {
                         HfTensor& norm = find(t, "model.norm.weight");
                         norm.spec.dtype = SafetensorsDType::I32;
                       }),
                       "tensor 'model.norm.weight' is I32");
  CHECK(!std::filesystem::exists(dir / "out.h5"));
}
