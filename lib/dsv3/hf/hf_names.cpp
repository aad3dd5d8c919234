#include "dsv3/hf/hf_names.hpp"

#include "dsv3/core/error.hpp"

#include <fmt/format.h>

#include <array>
#include <string_view>
#include <utility>

namespace dsv3::hf {

namespace {

// dsv3 name within a layer → HF name within "model.layers.<l>.".
constexpr std::array<std::pair<std::string_view, std::string_view>, 18> kLayerNames = {{
    {"attention_norm", "input_layernorm.weight"},
    {"ffn_norm", "post_attention_layernorm.weight"},
    {"attention.wq", "self_attn.q_proj.weight"},
    {"attention.wq_a", "self_attn.q_a_proj.weight"},
    {"attention.q_norm", "self_attn.q_a_layernorm.weight"},
    {"attention.wq_b", "self_attn.q_b_proj.weight"},
    {"attention.wkv_a", "self_attn.kv_a_proj_with_mqa.weight"},
    {"attention.kv_norm", "self_attn.kv_a_layernorm.weight"},
    {"attention.wkv_b", "self_attn.kv_b_proj.weight"},
    {"attention.wo", "self_attn.o_proj.weight"},
    {"feed_forward.w1", "mlp.gate_proj.weight"},
    {"feed_forward.w3", "mlp.up_proj.weight"},
    {"feed_forward.w2", "mlp.down_proj.weight"},
    {"moe.router.gate", "mlp.gate.weight"},
    {"moe.expert_bias", "mlp.gate.e_score_correction_bias"},
    {"moe.shared_experts.w1", "mlp.shared_experts.gate_proj.weight"},
    {"moe.shared_experts.w3", "mlp.shared_experts.up_proj.weight"},
    {"moe.shared_experts.w2", "mlp.shared_experts.down_proj.weight"},
}};
// Stacked routed experts → per expert j: "model.layers.<l>.mlp.experts.<j>." + name.
constexpr std::array<std::pair<std::string_view, std::string_view>, 3> kExpertNames = {{
    {"moe.experts.w1", "gate_proj.weight"},
    {"moe.experts.w3", "up_proj.weight"},
    {"moe.experts.w2", "down_proj.weight"},
}};

}  // namespace

std::vector<std::string> hf_tensor_names(const std::string& name, std::int64_t n_routed_experts) {
  if (name == "tok_embeddings") return {"model.embed_tokens.weight"};
  if (name == "norm") return {"model.norm.weight"};
  if (name == "output") return {"lm_head.weight"};
  const std::string_view text(name);
  const std::size_t dot = text.find('.', 7);
  DSV3_CHECK(text.starts_with("layers.") && dot != std::string_view::npos, "no Hugging Face name for '{}'", name);
  const std::string_view layer = text.substr(7, dot - 7);
  const std::string_view inner = text.substr(dot + 1);
  const std::string prefix = fmt::format("model.layers.{}.", layer);
  for (const auto& [dsv3, hf] : kExpertNames) {
    if (dsv3 != inner) continue;
    std::vector<std::string> names;
    for (std::int64_t expert = 0; expert < n_routed_experts; ++expert)
      names.push_back(fmt::format("{}mlp.experts.{}.{}", prefix, expert, hf));
    return names;
  }
  for (const auto& [dsv3, hf] : kLayerNames) {
    if (dsv3 == inner) return {prefix + std::string(hf)};
  }
  fail("no Hugging Face name for '{}'", name);
}

std::string hf_scale_name(const std::string& weight) { return weight + "_scale_inv"; }

std::optional<std::int64_t> hf_layer_of(const std::string& name) {
  constexpr std::string_view kPrefix = "model.layers.";
  if (!std::string_view(name).starts_with(kPrefix)) return std::nullopt;
  std::int64_t layer = 0;
  std::size_t i = kPrefix.size();
  if (i >= name.size() || name[i] < '0' || name[i] > '9') return std::nullopt;
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i) layer = layer * 10 + (name[i] - '0');
  return layer;
}

}  // namespace dsv3::hf
