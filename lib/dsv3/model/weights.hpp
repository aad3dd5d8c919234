// Typed views of the model's parameters (or of their gradients: same names, same layout), by layer.
// Layers take these structs instead of looking tensors up by name.
#pragma once

#include "dsv3/model/model_args.hpp"
#include "dsv3/tensor/tensor.hpp"

#include <functional>
#include <string>
#include <vector>

namespace dsv3::model {

struct AttentionWeights {
  Tensor wq;       // [H·qk_head_dim, dim]           (q_lora_rank = 0)
  Tensor wq_a;     // [q_lora_rank, dim]             (q_lora_rank > 0)
  Tensor q_norm;   // [q_lora_rank]
  Tensor wq_b;     // [H·qk_head_dim, q_lora_rank]
  Tensor wkv_a;    // [kv_lora_rank + qk_rope_head_dim, dim]
  Tensor kv_norm;  // [kv_lora_rank]
  Tensor wkv_b;    // [H·(qk_nope_head_dim + v_head_dim), kv_lora_rank]
  Tensor wo;       // [dim, H·v_head_dim]
};

struct FeedForwardWeights {
  Tensor w1;  // gate: [hidden, dim], or [E, hidden, dim] for the routed experts
  Tensor w2;  // down: [dim, hidden], or [E, dim, hidden]
  Tensor w3;  // up:   [hidden, dim], or [E, hidden, dim]
};

struct MoeWeights {
  Tensor gate;                 // router: [E, dim]
  FeedForwardWeights experts;  // stacked routed experts
  FeedForwardWeights shared;   // one FFN of width moe_inter_dim · n_shared_experts (undefined when none)
};

struct BlockWeights {
  Tensor attention_norm;  // [dim]
  AttentionWeights attention;
  Tensor ffn_norm;  // [dim]
  bool moe_layer = false;
  FeedForwardWeights feed_forward;  // dense layers
  MoeWeights moe;                   // MoE layers
};

struct ModelWeights {
  Tensor tok_embeddings;  // [vocab, dim]
  std::vector<BlockWeights> layers;
  Tensor norm;    // [dim]
  Tensor output;  // [vocab, dim]
};

// Binds every tensor by its checkpoint name through `lookup` (e.g. ParameterStore::param or ::grad).
using TensorLookup = std::function<Tensor(const std::string& name)>;
ModelWeights bind_weights(const ModelArgs& args, const TensorLookup& lookup);

}  // namespace dsv3::model
