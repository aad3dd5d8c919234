// config.json <-> model args: the released 671B config, the newer rope_parameters form, the round trip, and the
// configs dsv3 cannot reproduce exactly (an error naming the field).
#include "dsv3/hf/hf_config.hpp"
#include "dsv3/hf/hf_names.hpp"
#include "dsv3/train/checkpoint.hpp"
#include "dsv3/train/model_checkpoint.hpp"
#include "io/io_testing.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cmath>

using namespace dsv3;
using nlohmann::json;

namespace {

// The config.json of the released DeepSeek-V3 (REFERENCE.md §4).
json config_671b() {
  return json::parse(R"({
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "vocab_size": 129280,
    "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048, "num_hidden_layers": 61,
    "first_k_dense_replace": 3, "num_attention_heads": 128, "num_key_value_heads": 128, "n_routed_experts": 256,
    "n_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4, "routed_scaling_factor": 2.5,
    "scoring_func": "sigmoid", "topk_method": "noaux_tc", "norm_topk_prob": true, "q_lora_rank": 1536,
    "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "rope_theta": 10000,
    "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
                     "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
    "max_position_embeddings": 163840, "rms_norm_eps": 1e-6, "num_nextn_predict_layers": 1,
    "tie_word_embeddings": false, "bos_token_id": 0, "eos_token_id": 1, "hidden_act": "silu",
    "attention_bias": false, "moe_layer_freq": 1, "torch_dtype": "bfloat16",
    "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                            "weight_block_size": [128, 128]}})");
}

hf::HfConfig parse(const json& config) { return hf::parse_hf_config(config.dump(), "config.json"); }

}  // namespace

TEST_CASE("config.json: the released 671B config is the 671B flavor but for its norm eps and mask") {
  const hf::HfConfig config = parse(config_671b());
  const model::ModelArgs& a = config.args;
  CHECK(a.vocab_size == 129280);
  CHECK(a.dim == 7168);
  CHECK(a.n_dense_layers == 3);
  CHECK(a.n_routed_experts == 256);
  CHECK(a.n_activated_experts == 8);
  CHECK(a.n_expert_groups == 8);
  CHECK(a.n_limited_groups == 4);
  CHECK(a.score_func == model::ScoreFunction::sigmoid);
  CHECK(a.route_norm);
  CHECK(a.route_scale == 2.5);
  CHECK(a.q_lora_rank == 1536);
  CHECK(a.yarn);
  CHECK(a.rope_factor == 40);
  CHECK(a.original_seq_len == 4096);
  CHECK(a.mscale == 1.0);
  CHECK(a.norm_eps == 1e-6);
  CHECK(config.mtp_layers == 1);
  CHECK(config.fp8);
  CHECK(config.max_position_embeddings == 163840);
  CHECK(std::abs(a.softmax_scale() / (1 / std::sqrt(192.0)) - std::pow(0.1 * std::log(40.0) + 1, 2)) < 1e-12);

  model::ModelArgs flavor = model::model_flavor("671B");
  flavor.norm_eps = 1e-6;                   // HF checkpoints carry their own (REFERENCE.md §1)
  flavor.mask = model::MaskType::causal;    // transformers has no document mask
  model::ModelArgs imported = a;
  imported.flavor = flavor.flavor;
  imported.max_seq_len = flavor.max_seq_len;
  CHECK(train::model_args_json(imported) == train::model_args_json(flavor));
}

TEST_CASE("config.json: rope_parameters (newer transformers) reads as rope_scaling; no scaling means plain RoPE") {
  json newer = config_671b();
  json rope = newer["rope_scaling"];
  newer.erase("rope_scaling");
  newer.erase("rope_theta");
  rope.erase("type");
  rope["rope_type"] = "yarn";
  rope["rope_theta"] = 10000.0;
  newer["rope_parameters"] = rope;
  CHECK(train::model_args_json(parse(newer).args) == train::model_args_json(parse(config_671b()).args));

  json plain = config_671b();
  plain.erase("rope_scaling");
  const model::ModelArgs args = parse(plain).args;
  CHECK(!args.yarn);
  CHECK(args.softmax_scale() == doctest::Approx(1 / std::sqrt(192.0)));
  json null_lora = config_671b();
  null_lora["q_lora_rank"] = nullptr;
  CHECK(parse(null_lora).args.q_lora_rank == 0);
}

TEST_CASE("config.json: written and read back") {
  for (const bool fp8 : {false, true}) {
    hf::HfConfig config = parse(config_671b());
    config.fp8 = fp8;
    config.args.q_lora_rank = fp8 ? 1536 : 0;
    const hf::HfConfig back = hf::parse_hf_config(hf::hf_config_json(config), "written");
    CHECK(train::model_args_json(back.args) == train::model_args_json(config.args));
    CHECK(back.fp8 == fp8);
    CHECK(back.mtp_layers == config.mtp_layers);
    CHECK(back.max_position_embeddings == config.max_position_embeddings);
  }
}

TEST_CASE("config.json: what dsv3 cannot reproduce is an error naming the field") {
  const auto with = [](const char* key, json value) {
    json config = config_671b();
    config[key] = std::move(value);
    return config;
  };
  json mscale = config_671b();
  mscale["rope_scaling"]["mscale"] = 0.707;
  CHECK_ERROR_CONTAINS(parse(mscale), "config.json", "mscale = 0.707", "mscale_all_dim = 1");
  json no_all_dim = config_671b();
  no_all_dim["rope_scaling"].erase("mscale_all_dim");
  CHECK_ERROR_CONTAINS(parse(no_all_dim), "rope_scaling", "mscale_all_dim = 0");
  json linear = config_671b();
  linear["rope_scaling"]["type"] = "linear";
  CHECK_ERROR_CONTAINS(parse(linear), "rope type 'linear'");
  CHECK_ERROR_CONTAINS(parse(with("tie_word_embeddings", true)), "'tie_word_embeddings' = true");
  CHECK_ERROR_CONTAINS(parse(with("topk_method", "greedy")), "'topk_method' = \"greedy\"");
  CHECK_ERROR_CONTAINS(parse(with("num_key_value_heads", 1)), "'num_key_value_heads' = 1");
  CHECK_ERROR_CONTAINS(parse(with("hidden_size", "7168")), "config.json", "'hidden_size' = \"7168\" is not an integer");
  CHECK_ERROR_CONTAINS(parse(with("num_experts_per_tok", 300)), "config.json");
  json block = config_671b();
  block["quantization_config"]["weight_block_size"] = {64, 64};
  CHECK_ERROR_CONTAINS(parse(block), "quantization_config", "weight_block_size");
  json missing = config_671b();
  missing.erase("hidden_size");
  CHECK_ERROR_CONTAINS(parse(missing), "config.json", "missing field 'hidden_size'");
  CHECK_ERROR_CONTAINS(hf::parse_hf_config("{", "broken.json"), "broken.json", "not valid JSON");
}

TEST_CASE("HF names: every dataset of a model maps, experts stacked in order") {
  model::ModelArgs args = model::model_flavor("debugmodel");
  for (const train::ModelDataset& dataset : train::model_datasets(args, DType::f32))
    CHECK(!hf::hf_tensor_names(dataset.name, args.n_routed_experts).empty());
  CHECK(hf::hf_tensor_names("tok_embeddings", 8) == std::vector<std::string>{"model.embed_tokens.weight"});
  CHECK(hf::hf_tensor_names("layers.3.moe.expert_bias", 8) ==
        std::vector<std::string>{"model.layers.3.mlp.gate.e_score_correction_bias"});
  const auto experts = hf::hf_tensor_names("layers.1.moe.experts.w2", 8);
  REQUIRE(experts.size() == 8);
  CHECK(experts[7] == "model.layers.1.mlp.experts.7.down_proj.weight");
  CHECK(hf::hf_layer_of("model.layers.61.enorm.weight") == 61);
  CHECK(!hf::hf_layer_of("lm_head.weight"));
  CHECK_ERROR_CONTAINS(hf::hf_tensor_names("layers.0.attention.wz", 8), "no Hugging Face name", "wz");
}
