#include "dsv3/hf/hf_config.hpp"

#include "dsv3/core/error.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <sstream>

namespace dsv3::hf {

using nlohmann::json;

namespace {

// Field access with errors naming the file and the field.
class Fields {
 public:
  Fields(const json& object, std::string context) : object_(object), context_(std::move(context)) {
    DSV3_CHECK(object.is_object(), "{}: expected a JSON object, found {}", context_, object.type_name());
  }

  const json* find(const char* key) const {
    const auto it = object_.find(key);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }
  std::int64_t integer(const char* key) const {
    const json* value = find(key);
    DSV3_CHECK(value, "{}: missing field '{}'", context_, key);
    DSV3_CHECK(value->is_number_integer(), "{}: '{}' = {} is not an integer", context_, key, value->dump());
    return value->get<std::int64_t>();
  }
  std::int64_t integer(const char* key, std::int64_t fallback) const { return find(key) ? integer(key) : fallback; }
  double number(const char* key) const {
    const json* value = find(key);
    DSV3_CHECK(value, "{}: missing field '{}'", context_, key);
    DSV3_CHECK(value->is_number(), "{}: '{}' = {} is not a number", context_, key, value->dump());
    return value->get<double>();
  }
  double number(const char* key, double fallback) const { return find(key) ? number(key) : fallback; }
  bool boolean(const char* key, bool fallback) const {
    const json* value = find(key);
    if (!value) return fallback;
    DSV3_CHECK(value->is_boolean(), "{}: '{}' = {} is not true or false", context_, key, value->dump());
    return value->get<bool>();
  }
  std::string string(const char* key, const std::string& fallback) const {
    const json* value = find(key);
    if (!value) return fallback;
    DSV3_CHECK(value->is_string(), "{}: '{}' = {} is not a string", context_, key, value->dump());
    return value->get<std::string>();
  }
  // A field whose value dsv3 cannot change: anything else is an unsupported model.
  template <class T>
  void require(const char* key, const T& expected, const T& value, const char* why) const {
    DSV3_CHECK(value == expected, "{}: '{}' = {}: dsv3 supports only {} ({})", context_, key, json(value).dump(),
               json(expected).dump(), why);
  }
  const std::string& context() const { return context_; }

 private:
  const json& object_;
  std::string context_;
};

// rope_scaling (released checkpoints) or rope_parameters (newer transformers; may hold rope_theta too).
void read_rope(const Fields& config, HfConfig& result) {
  model::ModelArgs& args = result.args;
  args.rope_theta = config.number("rope_theta", 1e4);
  const json* scaling = config.find("rope_parameters");
  const char* key = "rope_parameters";
  if (!scaling) {
    scaling = config.find("rope_scaling");
    key = "rope_scaling";
  }
  args.yarn = false;
  args.rope_factor = 1.0;
  if (!scaling) return;
  const Fields rope(*scaling, fmt::format("{}: {}", config.context(), key));
  args.rope_theta = rope.number("rope_theta", args.rope_theta);
  const std::string type = rope.string("rope_type", rope.string("type", "default"));
  if (type == "default") return;
  DSV3_CHECK(type == "yarn", "{}: rope type '{}': dsv3 supports default (none) and yarn", rope.context(), type);
  args.yarn = true;
  args.rope_factor = rope.number("factor");
  args.original_seq_len = rope.integer("original_max_position_embeddings", args.original_seq_len);
  args.beta_fast = rope.number("beta_fast", 32.0);
  args.beta_slow = rope.number("beta_slow", 1.0);
  DSV3_CHECK(!rope.find("attention_factor"), "{}: 'attention_factor' is not supported", rope.context());
  DSV3_CHECK(rope.boolean("truncate", true), "{}: 'truncate' = false is not supported", rope.context());
  const double mscale = rope.number("mscale", 0.0);
  const double mscale_all_dim = rope.number("mscale_all_dim", 0.0);
  DSV3_CHECK(mscale != 0.0 && mscale == mscale_all_dim,
             "{}: mscale = {} and mscale_all_dim = {}: dsv3 supports YaRN with mscale = mscale_all_dim > 0 (the "
             "softmax scale m² and unscaled cos/sin)",
             rope.context(), mscale, mscale_all_dim);
  args.mscale = mscale;
}

}  // namespace

HfConfig parse_hf_config(const std::string& text, const std::string& source) {
  const json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  DSV3_CHECK(!root.is_discarded(), "{}: not valid JSON", source);
  const Fields config(root, source);
  HfConfig result;
  model::ModelArgs& args = result.args;
  args.flavor = "hf:" + config.string("model_type", "deepseek_v3");
  args.vocab_size = config.integer("vocab_size");
  args.dim = config.integer("hidden_size");
  args.inter_dim = config.integer("intermediate_size");
  args.moe_inter_dim = config.integer("moe_intermediate_size");
  args.n_layers = config.integer("num_hidden_layers");
  args.n_dense_layers = config.integer("first_k_dense_replace", 0);
  args.n_heads = config.integer("num_attention_heads");
  args.n_routed_experts = config.integer("n_routed_experts");
  args.n_shared_experts = config.integer("n_shared_experts", 0);
  args.n_activated_experts = config.integer("num_experts_per_tok");
  args.n_expert_groups = config.integer("n_group", 1);
  args.n_limited_groups = config.integer("topk_group", 1);
  args.route_scale = config.number("routed_scaling_factor", 1.0);
  args.route_norm = config.boolean("norm_topk_prob", false);
  const std::string score = config.string("scoring_func", "sigmoid");
  DSV3_CHECK(score == "sigmoid" || score == "softmax", "{}: 'scoring_func' = \"{}\": expected sigmoid or softmax",
             source, score);
  args.score_func = score == "sigmoid" ? model::ScoreFunction::sigmoid : model::ScoreFunction::softmax;
  config.require("topk_method", std::string("noaux_tc"), config.string("topk_method", "noaux_tc"),
                 "group score = sum of the two best biased scores");
  config.require("moe_layer_freq", std::int64_t{1}, config.integer("moe_layer_freq", 1), "every layer MoE");
  args.q_lora_rank = config.integer("q_lora_rank", 0);
  args.kv_lora_rank = config.integer("kv_lora_rank");
  args.qk_nope_head_dim = config.integer("qk_nope_head_dim");
  args.qk_rope_head_dim = config.integer("qk_rope_head_dim");
  args.v_head_dim = config.integer("v_head_dim");
  config.require("num_key_value_heads", args.n_heads, config.integer("num_key_value_heads", args.n_heads),
                 "MLA: as many key/value heads as heads");
  config.require("attention_bias", false, config.boolean("attention_bias", false), "no biases");
  config.require("tie_word_embeddings", false, config.boolean("tie_word_embeddings", false),
                 "separate embedding and output weights");
  config.require("hidden_act", std::string("silu"), config.string("hidden_act", "silu"), "SwiGLU");
  args.norm_eps = config.number("rms_norm_eps", 1e-6);
  args.mask = model::MaskType::causal;
  read_rope(config, result);
  result.max_position_embeddings = config.integer("max_position_embeddings", 4096);
  args.max_seq_len = result.max_position_embeddings;
  result.mtp_layers = config.integer("num_nextn_predict_layers", 0);
  result.bos_token_id = config.integer("bos_token_id", 0);
  result.eos_token_id = config.integer("eos_token_id", 1);
  if (const json* quantization = config.find("quantization_config")) {
    const Fields q(*quantization, source + ": quantization_config");
    q.require("quant_method", std::string("fp8"), q.string("quant_method", ""), "the released FP8 format");
    q.require("fmt", std::string("e4m3"), q.string("fmt", "e4m3"), "float8 e4m3 weights");
    const json* block = q.find("weight_block_size");
    DSV3_CHECK(block && *block == json({128, 128}), "{}: 'weight_block_size' = {}: dsv3 reads 128×128 blocks",
               q.context(), block ? block->dump() : "missing");
    result.fp8 = true;
  }
  try {
    model::validate(args);
  } catch (const Error& error) {
    fail("{}: {}", source, error.what());
  }
  return result;
}

HfConfig read_hf_config(const std::filesystem::path& path) {
  std::ifstream stream(path);
  DSV3_CHECK(stream, "{}: cannot open", path.string());
  std::stringstream text;
  text << stream.rdbuf();
  return parse_hf_config(text.str(), path.string());
}

std::string hf_config_json(const HfConfig& config) {
  const model::ModelArgs& a = config.args;
  json root = {
      {"architectures", {"DeepseekV3ForCausalLM"}},
      {"model_type", "deepseek_v3"},
      {"vocab_size", a.vocab_size},
      {"hidden_size", a.dim},
      {"intermediate_size", a.inter_dim},
      {"moe_intermediate_size", a.moe_inter_dim},
      {"num_hidden_layers", a.n_layers},
      {"first_k_dense_replace", a.n_dense_layers},
      {"num_attention_heads", a.n_heads},
      {"num_key_value_heads", a.n_heads},
      {"n_routed_experts", a.n_routed_experts},
      {"n_shared_experts", a.n_shared_experts},
      {"num_experts_per_tok", a.n_activated_experts},
      {"n_group", a.n_expert_groups},
      {"topk_group", a.n_limited_groups},
      {"routed_scaling_factor", a.route_scale},
      {"scoring_func", a.score_func == model::ScoreFunction::sigmoid ? "sigmoid" : "softmax"},
      {"topk_method", "noaux_tc"},
      {"norm_topk_prob", a.route_norm},
      {"moe_layer_freq", 1},
      {"q_lora_rank", a.q_lora_rank > 0 ? json(a.q_lora_rank) : json(nullptr)},
      {"kv_lora_rank", a.kv_lora_rank},
      {"qk_nope_head_dim", a.qk_nope_head_dim},
      {"qk_rope_head_dim", a.qk_rope_head_dim},
      {"head_dim", a.qk_rope_head_dim},
      {"v_head_dim", a.v_head_dim},
      {"hidden_act", "silu"},
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"rms_norm_eps", a.norm_eps},
      {"rope_theta", a.rope_theta},
      {"rope_interleave", true},
      {"max_position_embeddings", config.max_position_embeddings},
      {"num_nextn_predict_layers", config.mtp_layers},
      {"tie_word_embeddings", false},
      {"bos_token_id", config.bos_token_id},
      {"eos_token_id", config.eos_token_id},
      {"initializer_range", 0.02},
      {"use_cache", true},
  };
  if (a.yarn && a.rope_factor > 1.0) {
    root["rope_scaling"] = {{"type", "yarn"},
                            {"rope_type", "yarn"},
                            {"factor", a.rope_factor},
                            {"original_max_position_embeddings", a.original_seq_len},
                            {"beta_fast", a.beta_fast},
                            {"beta_slow", a.beta_slow},
                            {"mscale", a.mscale},
                            {"mscale_all_dim", a.mscale}};
  }
  if (config.fp8) {
    root["quantization_config"] = {{"quant_method", "fp8"},
                                   {"fmt", "e4m3"},
                                   {"activation_scheme", "dynamic"},
                                   {"weight_block_size", {128, 128}}};
  }
  return root.dump(2) + "\n";
}

}  // namespace dsv3::hf
