#include "dsv3/model/model_args.hpp"

#include "dsv3/core/error.hpp"

#include <fmt/ranges.h>

#include <cmath>

namespace dsv3::model {

double ModelArgs::softmax_scale() const {
  double scale = 1.0 / std::sqrt(static_cast<double>(qk_head_dim()));
  if (yarn && rope_factor > 1.0) {
    const double m = 0.1 * mscale * std::log(rope_factor) + 1.0;
    scale *= m * m;
  }
  return scale;
}

namespace {

ModelArgs debugmodel() { return ModelArgs{}; }

ModelArgs deepseek_16b() {
  ModelArgs args;
  args.flavor = "16B";
  args.vocab_size = 102400;
  args.dim = 2048;
  args.inter_dim = 10944;
  args.moe_inter_dim = 1408;
  args.n_layers = 27;
  args.n_dense_layers = 1;
  args.n_heads = 16;
  args.n_routed_experts = 64;
  args.n_shared_experts = 2;
  args.n_activated_experts = 6;
  args.mask = MaskType::document_causal;
  args.max_seq_len = 4096;
  return args;
}

ModelArgs deepseek_236b() {
  ModelArgs args;
  args.flavor = "236B";
  args.vocab_size = 102400;
  args.dim = 5120;
  args.inter_dim = 12288;
  args.moe_inter_dim = 1536;
  args.n_layers = 60;
  args.n_dense_layers = 1;
  args.n_heads = 128;
  args.n_routed_experts = 160;
  args.n_shared_experts = 2;
  args.n_activated_experts = 6;
  args.n_expert_groups = 8;
  args.n_limited_groups = 3;
  args.route_scale = 16.0;
  args.q_lora_rank = 1536;
  args.mscale = 1.0;
  args.mask = MaskType::document_causal;
  args.max_seq_len = 4096;
  return args;
}

ModelArgs deepseek_671b() {
  ModelArgs args;
  args.flavor = "671B";
  args.vocab_size = 129280;
  args.dim = 7168;
  args.inter_dim = 18432;
  args.moe_inter_dim = 2048;
  args.n_layers = 61;
  args.n_dense_layers = 3;
  args.n_heads = 128;
  args.n_routed_experts = 256;
  args.n_shared_experts = 1;
  args.n_activated_experts = 8;
  args.n_expert_groups = 8;
  args.n_limited_groups = 4;
  args.score_func = ScoreFunction::sigmoid;
  args.route_norm = true;
  args.route_scale = 2.5;
  args.q_lora_rank = 1536;
  args.mscale = 1.0;
  args.mask = MaskType::document_causal;
  args.max_seq_len = 4096;
  return args;
}

}  // namespace

std::vector<std::string> model_flavor_names() { return {"debugmodel", "debugmodel_flex_attn", "16B", "236B", "671B"}; }

ModelArgs model_flavor(std::string_view name) {
  if (name == "debugmodel") return debugmodel();
  if (name == "debugmodel_flex_attn") {
    ModelArgs args = debugmodel();
    args.flavor = "debugmodel_flex_attn";
    args.mask = MaskType::document_causal;
    return args;
  }
  if (name == "16B") return deepseek_16b();
  if (name == "236B") return deepseek_236b();
  if (name == "671B") return deepseek_671b();
  fail("model.flavor = '{}' is not a known flavor (known: {})", name, fmt::join(model_flavor_names(), ", "));
}

void validate(const ModelArgs& a) {
  const auto positive = [](const char* key, std::int64_t value) {
    DSV3_CHECK(value > 0, "model.{} = {} must be positive", key, value);
  };
  positive("vocab_size", a.vocab_size);
  positive("dim", a.dim);
  positive("inter_dim", a.inter_dim);
  positive("moe_inter_dim", a.moe_inter_dim);
  positive("n_layers", a.n_layers);
  positive("n_heads", a.n_heads);
  positive("kv_lora_rank", a.kv_lora_rank);
  positive("qk_nope_head_dim", a.qk_nope_head_dim);
  positive("v_head_dim", a.v_head_dim);
  positive("max_seq_len", a.max_seq_len);
  DSV3_CHECK(a.qk_rope_head_dim > 0 && a.qk_rope_head_dim % 2 == 0,
             "model.qk_rope_head_dim = {} must be positive and even (RoPE rotates pairs)", a.qk_rope_head_dim);
  DSV3_CHECK(a.q_lora_rank >= 0, "model.q_lora_rank = {} must be 0 (no query compression) or positive",
             a.q_lora_rank);
  DSV3_CHECK(a.n_dense_layers >= 0 && a.n_dense_layers <= a.n_layers,
             "model.n_dense_layers = {} must be in [0, n_layers = {}]", a.n_dense_layers, a.n_layers);
  if (a.n_dense_layers < a.n_layers) {
    positive("n_routed_experts", a.n_routed_experts);
    DSV3_CHECK(a.n_shared_experts >= 0, "model.n_shared_experts = {} must be ≥ 0", a.n_shared_experts);
    DSV3_CHECK(a.n_activated_experts >= 1 && a.n_activated_experts <= a.n_routed_experts,
               "model.n_activated_experts = {} must be in [1, n_routed_experts = {}]", a.n_activated_experts,
               a.n_routed_experts);
    DSV3_CHECK(a.n_expert_groups >= 1 && a.n_routed_experts % a.n_expert_groups == 0,
               "model.n_expert_groups = {} must divide n_routed_experts = {}", a.n_expert_groups, a.n_routed_experts);
    DSV3_CHECK(a.n_limited_groups >= 1 && a.n_limited_groups <= a.n_expert_groups,
               "model.n_limited_groups = {} must be in [1, n_expert_groups = {}]", a.n_limited_groups,
               a.n_expert_groups);
    const std::int64_t reachable = a.n_limited_groups * (a.n_routed_experts / a.n_expert_groups);
    DSV3_CHECK(a.n_activated_experts <= reachable,
               "model.n_activated_experts = {} exceeds the {} experts of the n_limited_groups = {} groups kept",
               a.n_activated_experts, reachable, a.n_limited_groups);
    DSV3_CHECK(a.route_scale > 0, "model.route_scale = {} must be positive", a.route_scale);
  }
  DSV3_CHECK(a.norm_eps > 0, "model.norm_eps = {} must be positive", a.norm_eps);
  DSV3_CHECK(a.rope_theta > 0 && a.rope_factor > 0, "model.rope_theta = {} and model.rope_factor = {} must be positive",
             a.rope_theta, a.rope_factor);
}

namespace {

std::int64_t attention_parameters(const ModelArgs& a) {
  const std::int64_t query = a.q_lora_rank == 0
                                 ? a.dim * a.n_heads * a.qk_head_dim()
                                 : a.dim * a.q_lora_rank + a.q_lora_rank + a.q_lora_rank * a.n_heads * a.qk_head_dim();
  const std::int64_t kv = a.dim * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank +
                          a.kv_lora_rank * a.n_heads * (a.qk_nope_head_dim + a.v_head_dim);
  return query + kv + a.n_heads * a.v_head_dim * a.dim;
}

}  // namespace

ParameterCounts count_parameters(const ModelArgs& a) {
  const std::int64_t attention = attention_parameters(a) + 2 * a.dim;  // + attention_norm, ffn_norm
  const std::int64_t expert = 3 * a.dim * a.moe_inter_dim;
  const std::int64_t dense_layer = attention + 3 * a.dim * a.inter_dim;
  const std::int64_t moe_layer = attention + (a.n_routed_experts + a.n_shared_experts) * expert + a.n_routed_experts * a.dim;
  const std::int64_t moe_layers = a.n_layers - a.n_dense_layers;
  const std::int64_t total = 2 * a.vocab_size * a.dim + a.dim + a.n_dense_layers * dense_layer + moe_layers * moe_layer;
  const std::int64_t inactive = moe_layers * (a.n_routed_experts - a.n_activated_experts) * expert;
  return {total, total - inactive};
}

double training_flops_per_token(const ModelArgs& a, std::int64_t seq_len, bool causal) {
  // Norm weights multiply element-wise and the embedding is a lookup: neither is a matmul parameter.
  const std::int64_t norms = a.n_layers * (2 * a.dim + a.kv_lora_rank + a.q_lora_rank) + a.dim;
  const double matmul_parameters = static_cast<double>(count_parameters(a).active - a.vocab_size * a.dim - norms);
  const double attention = 6.0 * static_cast<double>(a.n_layers * a.n_heads * (a.qk_head_dim() + a.v_head_dim)) *
                           static_cast<double>(seq_len) * (causal ? 0.5 : 1.0);
  return 6.0 * matmul_parameters + attention;
}

}  // namespace dsv3::model
