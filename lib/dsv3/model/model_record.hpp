// ModelRecord: everything Transformer::backward needs from the forward of one micro-batch (DESIGN.md
// "Computation"). The Transformer allocates the tensors on first use and reuses them for micro-batches of the same
// shape; records live outside the model so that a pipeline schedule can keep several alive.
//
// T = B·S tokens, D = dim, V = vocab_size. Block l reads x_l = (l == 0 ? embedded : layers[l − 1].out).
#pragma once

#include "dsv3/model/attention.hpp"
#include "dsv3/model/batch_context.hpp"
#include "dsv3/model/feed_forward.hpp"
#include "dsv3/model/moe.hpp"

#include <vector>

namespace dsv3::model {

struct BlockRecord {
  Tensor attention_norm_out;   // [T, D]: attention_norm(x_l), the input of attention
  Tensor attention_norm_rstd;  // [T]
  AttentionRecord attention;
  Tensor h;                        // [T, D]: x_l + attention(attention_norm(x_l))
  Tensor ffn_norm_out;             // [T, D]: ffn_norm(h), the input of the FFN or MoE
  Tensor ffn_norm_rstd;            // [T]
  FeedForwardRecord feed_forward;  // dense layers
  MoeRecord moe;                   // MoE layers
  Tensor out;                      // [T, D]: h + ffn(ffn_norm(h)), the block output
};

struct ModelRecord {
  BatchContext batch;  // positions 0..S−1 of every sequence, document ids (document-causal), rope tables
  Tensor inputs;       // i32/i64 [T]: a copy of the token ids (the caller may reuse its buffer)
  Tensor labels;       // i32/i64 [T]: a copy of the targets, ignore_index −100 allowed
  Tensor embedded;     // [T, D]: tok_embeddings[inputs], the input of block 0
  std::vector<BlockRecord> layers;
  Tensor norm_out;   // [T, D]: norm(x_L), the input of the output head
  Tensor norm_rstd;  // [T]
  Tensor logits;     // [T, V]
  Tensor lse;        // [T]: log-sum-exp of each row of logits
};

}  // namespace dsv3::model
