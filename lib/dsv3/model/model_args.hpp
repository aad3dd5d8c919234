// ModelArgs: every hyperparameter of a DeepSeek-V3 model (REFERENCE.md §1), the five named flavors,
// validation, parameter counts and FLOPs per token.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3::model {

enum class ScoreFunction { softmax, sigmoid };
enum class MaskType { causal, document_causal };
enum class InitScheme {
  torchtitan,  // depth-scaled truncated normals (REFERENCE.md §2 "Init")
  paper,       // std 0.006 everywhere, as the DeepSeek-V3 report
};

struct ModelArgs {
  std::string flavor = "debugmodel";
  std::int64_t vocab_size = 2048;
  std::int64_t dim = 256;
  std::int64_t inter_dim = 1024;      // dense FFN width
  std::int64_t moe_inter_dim = 256;   // width of each routed and shared expert
  std::int64_t n_layers = 6;
  std::int64_t n_dense_layers = 1;    // layers [0, n_dense_layers) use the dense FFN, the rest MoE
  std::int64_t n_heads = 16;
  // MoE
  std::int64_t n_routed_experts = 8;
  std::int64_t n_shared_experts = 2;
  std::int64_t n_activated_experts = 3;  // top_k
  std::int64_t n_expert_groups = 1;
  std::int64_t n_limited_groups = 1;
  ScoreFunction score_func = ScoreFunction::softmax;
  bool route_norm = false;
  double route_scale = 1.0;
  double load_balance_coeff = 1e-3;  // aux-loss-free bias update speed
  // MLA
  std::int64_t q_lora_rank = 0;  // 0: plain wq
  std::int64_t kv_lora_rank = 512;
  std::int64_t qk_nope_head_dim = 128;
  std::int64_t qk_rope_head_dim = 64;
  std::int64_t v_head_dim = 128;
  MaskType mask = MaskType::causal;
  // RoPE / YaRN
  std::int64_t max_seq_len = 2048;
  std::int64_t original_seq_len = 4096;
  double rope_theta = 1e4;
  double rope_factor = 40.0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 0.70;
  bool yarn = true;  // applied whenever rope_factor > 1 (transformers' choice, REFERENCE.md §2)
  double norm_eps = 1e-5;
  InitScheme init = InitScheme::torchtitan;

  std::int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  bool is_moe_layer(std::int64_t layer) const { return layer >= n_dense_layers; }
  // qk_head_dim^-0.5 · m², m = 0.1·mscale·ln(rope_factor) + 1 when YaRN applies.
  double softmax_scale() const;
};

// debugmodel, debugmodel_flex_attn, 16B, 236B, 671B; anything else is an error listing them.
ModelArgs model_flavor(std::string_view name);
std::vector<std::string> model_flavor_names();

// Throws dsv3::Error naming the field, its value and what is allowed (e.g. top_k > routed experts).
void validate(const ModelArgs& args);

struct ParameterCounts {
  std::int64_t total;   // every trained parameter (expert biases are buffers, not counted)
  std::int64_t active;  // per token: only top_k of the routed experts
};
ParameterCounts count_parameters(const ModelArgs& args);

// Training FLOPs per token (REFERENCE.md §3): 6·(active matmul parameters, output head included) + attention,
// attention = 6·layers·heads·(qk_head_dim + v_head_dim)·seq_len, halved when `causal` (DeepSeek's convention).
double training_flops_per_token(const ModelArgs& args, std::int64_t seq_len, bool causal);

}  // namespace dsv3::model
