// The whole Transformer against torchtitan's own DeepSeek-V3 model: the fixtures under tests/fixtures/golden were
// made by validation/torchtitan_golden.py (torchtitan's DeepSeekV3Model in float32 on one batch, forward and
// backward). Loading the same weights and expert biases, dsv3 must give the same loss, the same gradient of every
// parameter and the same tokens per expert, in f32 and in f64.
//
// A fixture is a safetensors file (REFERENCE.md §4): 8-byte little-endian header length, a JSON header naming each
// tensor's dtype, shape and byte range, then the data; "__metadata__" holds the model args and the loss.
#include "dsv3/model/model_record.hpp"
#include "dsv3/model/transformer.hpp"
#include "dsv3/ops/elementwise.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace dsv3;
using namespace dsv3::model;
using nlohmann::json;

namespace {

const std::filesystem::path kGoldenDir = std::filesystem::path(DSV3_FIXTURES_DIR) / "golden";

// Relative to the scale of the expected tensor (its largest magnitude), so that an element that cancels to near zero
// is judged by the rounding of the terms that produced it.
constexpr double kTolerance = 1e-5;

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path) {
    std::ifstream file(path, std::ios::binary);
    REQUIRE_MESSAGE(file, "cannot open ", path.string(), " (made by validation/torchtitan_golden.py)");
    std::uint64_t header_bytes = 0;
    file.read(reinterpret_cast<char*>(&header_bytes), sizeof header_bytes);
    std::string header(header_bytes, '\0');
    file.read(header.data(), static_cast<std::streamsize>(header_bytes));
    header_ = json::parse(header);
    const std::uintmax_t file_bytes = std::filesystem::file_size(path);
    REQUIRE(file_bytes >= sizeof header_bytes + header_bytes);
    data_.resize(file_bytes - sizeof header_bytes - header_bytes);
    file.read(data_.data(), static_cast<std::streamsize>(data_.size()));
    REQUIRE(file.gcount() == static_cast<std::streamsize>(data_.size()));
  }

  bool contains(const std::string& name) const { return header_.contains(name); }
  std::string metadata(const std::string& key) const { return header_.at("__metadata__").at(key).get<std::string>(); }

  // The tensor as stored: F32 → f32, I32 → i32, I64 → i64.
  Tensor tensor(const std::string& name) const {
    INFO("fixture tensor ", name);
    REQUIRE(contains(name));
    const json& entry = header_.at(name);
    const std::string dtype = entry.at("dtype").get<std::string>();
    const DType type = dtype == "F32" ? DType::f32 : dtype == "I32" ? DType::i32 : DType::i64;
    REQUIRE((dtype == "F32" || dtype == "I32" || dtype == "I64"));
    std::vector<std::int64_t> extents = entry.at("shape").get<std::vector<std::int64_t>>();
    const Tensor tensor = Tensor::empty(Shape(extents), type);
    const auto begin = entry.at("data_offsets").at(0).get<std::size_t>();
    const auto end = entry.at("data_offsets").at(1).get<std::size_t>();
    REQUIRE(end - begin == tensor.nbytes());
    REQUIRE(end <= data_.size());
    std::memcpy(tensor.raw(), data_.data() + begin, tensor.nbytes());
    return tensor;
  }

  // Names of the stored parameters: every tensor that is not a gradient, a buffer or the batch.
  std::vector<std::string> parameter_names() const {
    std::vector<std::string> names;
    for (const auto& [name, entry] : header_.items()) {
      const bool other = name == "__metadata__" || name.starts_with("grad.") || name.ends_with(".expert_bias") ||
                         name.ends_with(".tokens_per_expert") || name == "inputs" || name == "labels" ||
                         name == "document_ids";
      if (!other) names.push_back(name);
    }
    return names;
  }

 private:
  json header_;
  std::vector<char> data_;
};

ModelArgs model_args_from(const json& a) {
  ModelArgs args;
  args.flavor = "torchtitan golden";
  args.vocab_size = a.at("vocab_size");
  args.dim = a.at("dim");
  args.inter_dim = a.at("inter_dim");
  args.moe_inter_dim = a.at("moe_inter_dim");
  args.n_layers = a.at("n_layers");
  args.n_dense_layers = a.at("n_dense_layers");
  args.n_heads = a.at("n_heads");
  args.n_routed_experts = a.at("n_routed_experts");
  args.n_shared_experts = a.at("n_shared_experts");
  args.n_activated_experts = a.at("n_activated_experts");
  args.n_expert_groups = a.at("n_expert_groups");
  args.n_limited_groups = a.at("n_limited_groups");
  args.score_func = a.at("score_func") == "sigmoid" ? ScoreFunction::sigmoid : ScoreFunction::softmax;
  args.route_norm = a.at("route_norm");
  args.route_scale = a.at("route_scale");
  args.q_lora_rank = a.at("q_lora_rank");
  args.kv_lora_rank = a.at("kv_lora_rank");
  args.qk_nope_head_dim = a.at("qk_nope_head_dim");
  args.qk_rope_head_dim = a.at("qk_rope_head_dim");
  args.v_head_dim = a.at("v_head_dim");
  args.mask = a.at("mask") == "document_causal" ? MaskType::document_causal : MaskType::causal;
  args.max_seq_len = a.at("max_seq_len");
  args.original_seq_len = a.at("original_seq_len");
  args.rope_theta = a.at("rope_theta");
  args.rope_factor = a.at("rope_factor");
  args.beta_fast = a.at("beta_fast");
  args.beta_slow = a.at("beta_slow");
  args.mscale = a.at("mscale");
  args.norm_eps = a.at("norm_eps");
  validate(args);
  return args;
}

// max |actual − expected| / max |expected|.
double scaled_error(const Tensor& actual, const Tensor& expected) {
  const std::vector<double> a = testing::to_vector(actual), e = testing::to_vector(expected);
  double error = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < e.size(); ++i) {
    error = std::max(error, std::fabs(a[i] - e[i]));
    scale = std::max(scale, std::fabs(e[i]));
  }
  return scale > 0.0 ? error / scale : error;
}

void check_against_torchtitan(const std::string& fixture_name, DType dtype) {
  const SafetensorsFile fixture(kGoldenDir / (fixture_name + ".safetensors"));
  const ModelArgs args = model_args_from(json::parse(fixture.metadata("model_args")));
  Transformer model(args, dtype);

  // Every dsv3 parameter comes from the fixture, and the fixture holds no parameter dsv3 lacks.
  ParameterStore& parameters = model.parameters();
  CHECK(fixture.parameter_names().size() == parameters.specs().size());
  for (const ParameterSpec& spec : parameters.specs())
    ops::convert(parameters.param(spec.name), fixture.tensor(spec.name));
  for (std::int64_t layer = 0; layer < args.n_layers; ++layer) {
    if (!args.is_moe_layer(layer)) continue;
    model.expert_biases()[layer].copy_from(fixture.tensor(fmt::format("layers.{}.moe.expert_bias", layer)));
  }

  const Tensor document_ids = args.mask == MaskType::document_causal ? fixture.tensor("document_ids") : Tensor{};
  ModelRecord record;
  const ForwardResult result = model.forward(record, fixture.tensor("inputs"), fixture.tensor("labels"), document_ids);
  const auto valid_targets = static_cast<std::int64_t>(std::stoll(fixture.metadata("valid_targets")));
  REQUIRE(result.valid_targets == valid_targets);
  const double loss = result.loss_sum / static_cast<double>(valid_targets);
  const double expected_loss = std::stod(fixture.metadata("loss"));
  const double loss_error = std::fabs(loss - expected_loss) / std::fabs(expected_loss);
  MESSAGE(fixture_name, " ", dtype_name(dtype), ": loss ", loss, " vs torchtitan ", expected_loss, ", relative error ",
          loss_error);
  CHECK(loss_error <= kTolerance);

  for (std::int64_t layer = 0; layer < args.n_layers; ++layer) {
    if (!args.is_moe_layer(layer)) continue;
    INFO("tokens per expert of layer ", layer);
    const std::string name = fmt::format("layers.{}.moe.tokens_per_expert", layer);
    CHECK(testing::to_vector(model.tokens_per_expert()[layer]) == testing::to_vector(fixture.tensor(name)));
  }

  parameters.zero_grads();
  model.backward(record, 1.0 / static_cast<double>(valid_targets), 0.0);
  double worst_error = 0.0;
  std::string worst_name;
  for (const ParameterSpec& spec : parameters.specs()) {
    const double error = scaled_error(parameters.grad(spec.name), fixture.tensor("grad." + spec.name));
    INFO("gradient of ", spec.name, ": max error / max |torchtitan gradient| = ", error);
    CHECK(error <= kTolerance);
    if (error >= worst_error) {
      worst_error = error;
      worst_name = spec.name;
    }
  }
  MESSAGE(fixture_name, " ", dtype_name(dtype), ": largest gradient error ", worst_error, " (", worst_name,
          ", relative to the gradient's largest magnitude)");
}

}  // namespace

TEST_CASE("torchtitan golden: debug model (softmax routing, q_lora 0, causal), f32 and f64") {
  for (const DType dtype : {DType::f32, DType::f64}) check_against_torchtitan("debugmodel", dtype);
}

TEST_CASE("torchtitan golden: sigmoid group-limited routing, q_lora > 0, packed documents, f32 and f64") {
  for (const DType dtype : {DType::f32, DType::f64}) check_against_torchtitan("sigmoid_grouped_qlora_documents", dtype);
}
