#include "dsv3/model/weights.hpp"

namespace dsv3::model {

namespace {

FeedForwardWeights bind_feed_forward(const std::string& prefix, const TensorLookup& lookup) {
  return {lookup(prefix + ".w1"), lookup(prefix + ".w2"), lookup(prefix + ".w3")};
}

}  // namespace

ModelWeights bind_weights(const ModelArgs& args, const TensorLookup& lookup) {
  ModelWeights weights;
  weights.tok_embeddings = lookup("tok_embeddings");
  for (std::int64_t layer = 0; layer < args.n_layers; ++layer) {
    const std::string prefix = "layers." + std::to_string(layer);
    BlockWeights block;
    block.attention_norm = lookup(prefix + ".attention_norm");
    block.ffn_norm = lookup(prefix + ".ffn_norm");
    AttentionWeights& attention = block.attention;
    if (args.q_lora_rank == 0) {
      attention.wq = lookup(prefix + ".attention.wq");
    } else {
      attention.wq_a = lookup(prefix + ".attention.wq_a");
      attention.q_norm = lookup(prefix + ".attention.q_norm");
      attention.wq_b = lookup(prefix + ".attention.wq_b");
    }
    attention.wkv_a = lookup(prefix + ".attention.wkv_a");
    attention.kv_norm = lookup(prefix + ".attention.kv_norm");
    attention.wkv_b = lookup(prefix + ".attention.wkv_b");
    attention.wo = lookup(prefix + ".attention.wo");
    block.moe_layer = args.is_moe_layer(layer);
    if (!block.moe_layer) {
      block.feed_forward = bind_feed_forward(prefix + ".feed_forward", lookup);
    } else {
      block.moe.gate = lookup(prefix + ".moe.router.gate");
      block.moe.experts = bind_feed_forward(prefix + ".moe.experts", lookup);
      if (args.n_shared_experts > 0) block.moe.shared = bind_feed_forward(prefix + ".moe.shared_experts", lookup);
    }
    weights.layers.push_back(std::move(block));
  }
  weights.norm = lookup("norm");
  weights.output = lookup("output");
  return weights;
}

}  // namespace dsv3::model
