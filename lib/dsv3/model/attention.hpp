// Multi-head latent attention (MLA, REFERENCE.md §2) of one layer: explicit forward into an AttentionRecord and
// backward from it (DESIGN.md "Computation").
//
//   query:  q = wq(x)                       or  q = wq_b(q_norm(wq_a(x)))        [T, H, nope | rope]
//   kv:     [c | k_pe] = wkv_a(x),  [k_nope | v] = wkv_b(kv_norm(c))          per head [nope | v]
//   RoPE on the rope part of every q head and on k_pe, one head shared by all H heads
//   out = wo(softmax(q·kᵀ·scale + mask)·v)
//
// T = B·S tokens; H heads; nope = qk_nope_head_dim, rope = qk_rope_head_dim, qk = nope + rope, V = v_head_dim.
#pragma once

#include "dsv3/model/batch_context.hpp"
#include "dsv3/model/model_args.hpp"
#include "dsv3/model/weights.hpp"

namespace dsv3::model {

// Everything backward needs, per micro-batch and layer. The layer allocates the tensors on first use (ensure_tensor)
// and reuses them for micro-batches of the same shape; the record itself lives outside the layer so that pipeline
// schedules can keep several alive.
struct AttentionRecord {
  Tensor q_latent;          // [T, q_lora_rank]: wq_a(x)                                       (q_lora_rank > 0)
  Tensor q_latent_normed;   // [T, q_lora_rank]: q_norm(q_latent), the input of wq_b           (q_lora_rank > 0)
  Tensor q_latent_rstd;     // [T]                                                             (q_lora_rank > 0)
  Tensor q;                 // [B, S, H, qk]: per head [q_nope | rope(q_pe)]
  Tensor kv_latent;         // [T, kv_lora_rank]: c, the first kv_lora_rank outputs of wkv_a(x)
  Tensor kv_latent_normed;  // [T, kv_lora_rank]: kv_norm(c), the input of wkv_b
  Tensor kv_latent_rstd;    // [T]
  Tensor k;                 // [B, S, H, qk]: per head [k_nope | rope(k_pe)], the same k_pe in every head
  Tensor v;                 // [B, S, H, V]
  Tensor attention_out;     // [B, S, H, V]: softmax(q·kᵀ·scale + mask)·v, the input of wo
  Tensor lse;               // [B, H, S]: log-sum-exp of each query's scaled, masked scores
};

// x: [T, dim] (the attention_norm output), out: [T, dim]. All float tensors share the parameters' dtype
// (f32 for training, f64 for gradient checks); batch.rope_cos/rope_sin must come from make_rope_tables.
void attention_forward(const Tensor& out, AttentionRecord& record, const Tensor& x, const AttentionWeights& w,
                       const ModelArgs& args, const BatchContext& batch);

// dx: [T, dim], overwritten (skipped when undefined); dout: [T, dim]. Parameter gradients are accumulated into
// `grads` (the same struct bound to the gradient tensors). `record` is the one attention_forward filled.
void attention_backward(const Tensor& dx, const Tensor& dout, const AttentionRecord& record, const Tensor& x,
                        const AttentionWeights& w, const AttentionWeights& grads, const ModelArgs& args,
                        const BatchContext& batch);

// batch.rope_cos, batch.rope_sin: [max_seq_len, qk_rope_head_dim/2] of `dtype` on `device`, with YaRN frequencies
// whenever args.yarn and rope_factor > 1 (REFERENCE.md §2, transformers' choice).
void make_rope_tables(BatchContext& batch, const ModelArgs& args, DType dtype, Device device);

}  // namespace dsv3::model
