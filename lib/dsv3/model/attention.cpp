#include "dsv3/model/attention.hpp"

#include "dsv3/ops/attention.hpp"
#include "dsv3/ops/elementwise.hpp"
#include "dsv3/ops/matmul.hpp"
#include "dsv3/ops/norm.hpp"
#include "dsv3/ops/rope.hpp"

#include <algorithm>
#include <cstdint>

namespace dsv3::model {

namespace {

// The extents of one layer call (names as in attention.hpp).
struct Extents {
  std::int64_t batch, seq, tokens, dim, heads, nope, rope, qk, v, kv_lora, q_lora;
};

Extents extents_of(const ModelArgs& args, const BatchContext& batch) {
  return {.batch = batch.batch,
          .seq = batch.seq_len,
          .tokens = batch.tokens(),
          .dim = args.dim,
          .heads = args.n_heads,
          .nope = args.qk_nope_head_dim,
          .rope = args.qk_rope_head_dim,
          .qk = args.qk_head_dim(),
          .v = args.v_head_dim,
          .kv_lora = args.kv_lora_rank,
          .q_lora = args.q_lora_rank};
}

// x (or dx, dout) is [T, dim] for the batch.
void check_tokens(const char* op, const char* name, const Tensor& x, const Extents& e) {
  DSV3_CHECK(x.rank() == 2 && x.size(0) == e.tokens && x.size(1) == e.dim,
             "{}: {} is {}, expected [B·S = {}, dim = {}]", op, name, x.describe(), e.tokens, e.dim);
}

enum class Rotation {
  forward,   // RoPE
  backward,  // its transpose, for gradients
};

// RoPE on columns [first, first + rope) of every head of x [T, heads, row], in place, through a contiguous copy
// [T, heads, rope] (the rope op takes contiguous tensors).
void rotate_rope_columns(const Tensor& x, std::int64_t first, std::int64_t rope, const BatchContext& batch,
                         Rotation rotation) {
  const Tensor part = Tensor::empty(Shape{x.size(0), x.size(1), rope}, x.dtype(), x.device());  // [T, heads, rope]
  ops::copy_head_columns(part, 0, x, first, rope);
  if (rotation == Rotation::forward) {
    ops::rope_forward(part, part, batch.rope_cos, batch.rope_sin, batch.positions);
  } else {
    ops::rope_backward(part, part, batch.rope_cos, batch.rope_sin, batch.positions);
  }
  ops::copy_head_columns(x, first, part, 0, rope);
}

ops::AttentionOptions attention_options(const ModelArgs& args) {
  return {.scale = args.softmax_scale(),
          .mask = args.mask == MaskType::document_causal ? ops::AttentionMask::document_causal
                                                         : ops::AttentionMask::causal};
}

// The attention op takes document ids only with the document-causal mask.
Tensor mask_documents(const ModelArgs& args, const BatchContext& batch) {
  return args.mask == MaskType::document_causal ? batch.document_ids : Tensor{};
}

}  // namespace

void attention_forward(const Tensor& out, AttentionRecord& record, const Tensor& x, const AttentionWeights& w,
                       const ModelArgs& args, const BatchContext& batch) {
  const char* op = "attention_forward";
  const Extents e = extents_of(args, batch);
  check_tokens(op, "x", x, e);
  check_tokens(op, "out", out, e);
  const DType dtype = x.dtype();
  const Device device = x.device();
  const auto record_tensor = [&](Tensor& slot, const Shape& shape) -> const Tensor& {
    return ensure_tensor(slot, shape, dtype, device);
  };

  // Query: the projection writes [T, H·qk] straight into q [B, S, H, qk] (the same layout), then RoPE on q_pe.
  const Tensor& q = record_tensor(record.q, Shape{e.batch, e.seq, e.heads, e.qk});
  if (e.q_lora == 0) {
    ops::linear_forward(q.view(Shape{e.tokens, e.heads * e.qk}), x, w.wq);
  } else {
    const Tensor& q_latent = record_tensor(record.q_latent, Shape{e.tokens, e.q_lora});
    const Tensor& q_latent_normed = record_tensor(record.q_latent_normed, Shape{e.tokens, e.q_lora});
    const Tensor& q_latent_rstd = record_tensor(record.q_latent_rstd, Shape{e.tokens});
    ops::linear_forward(q_latent, x, w.wq_a);
    ops::rmsnorm_forward(q_latent_normed, q_latent_rstd, q_latent, w.q_norm, args.norm_eps);
    ops::linear_forward(q.view(Shape{e.tokens, e.heads * e.qk}), q_latent_normed, w.wq_b);
  }
  rotate_rope_columns(q.view(Shape{e.tokens, e.heads, e.qk}), e.nope, e.rope, batch, Rotation::forward);

  // KV: wkv_a(x) = [c | k_pe], as one head of width kv_lora + rope so that the column helpers apply.
  const Tensor kv_a = Tensor::empty(Shape{e.tokens, 1, e.kv_lora + e.rope}, dtype, device);  // [T, 1, kv_lora + rope]
  ops::linear_forward(kv_a.view(Shape{e.tokens, e.kv_lora + e.rope}), x, w.wkv_a);
  rotate_rope_columns(kv_a, e.kv_lora, e.rope, batch, Rotation::forward);
  const Tensor& kv_latent = record_tensor(record.kv_latent, Shape{e.tokens, e.kv_lora});
  const Tensor& kv_latent_normed = record_tensor(record.kv_latent_normed, Shape{e.tokens, e.kv_lora});
  const Tensor& kv_latent_rstd = record_tensor(record.kv_latent_rstd, Shape{e.tokens});
  ops::copy_head_columns(kv_latent.view(Shape{e.tokens, 1, e.kv_lora}), 0, kv_a, 0, e.kv_lora);
  ops::rmsnorm_forward(kv_latent_normed, kv_latent_rstd, kv_latent, w.kv_norm, args.norm_eps);
  const Tensor kv = Tensor::empty(Shape{e.tokens, e.heads, e.nope + e.v}, dtype, device);  // [T, H, nope + V]
  ops::linear_forward(kv.view(Shape{e.tokens, e.heads * (e.nope + e.v)}), kv_latent_normed, w.wkv_b);

  // k = [k_nope | k_pe] per head, v.
  const Tensor& k = record_tensor(record.k, Shape{e.batch, e.seq, e.heads, e.qk});
  const Tensor& v = record_tensor(record.v, Shape{e.batch, e.seq, e.heads, e.v});
  const Tensor k_heads = k.view(Shape{e.tokens, e.heads, e.qk});  // [T, H, qk]
  ops::copy_head_columns(k_heads, 0, kv, 0, e.nope);
  ops::copy_head_columns(k_heads, e.nope, kv_a, e.kv_lora, e.rope);  // broadcast to every head
  ops::copy_head_columns(v.view(Shape{e.tokens, e.heads, e.v}), 0, kv, e.nope, e.v);

  const Tensor& attention_out = record_tensor(record.attention_out, Shape{e.batch, e.seq, e.heads, e.v});
  const Tensor& lse = record_tensor(record.lse, Shape{e.batch, e.heads, e.seq});
  ops::attention_forward(attention_out, lse, q, k, v, mask_documents(args, batch), attention_options(args));
  ops::linear_forward(out, attention_out.view(Shape{e.tokens, e.heads * e.v}), w.wo);
}

void attention_backward(const Tensor& dx, const Tensor& dout, const AttentionRecord& record, const Tensor& x,
                        const AttentionWeights& w, const AttentionWeights& grads, const ModelArgs& args,
                        const BatchContext& batch) {
  const char* op = "attention_backward";
  const Extents e = extents_of(args, batch);
  check_tokens(op, "x", x, e);
  check_tokens(op, "dout", dout, e);
  if (dx.defined()) check_tokens(op, "dx", dx, e);
  DSV3_CHECK(record.q.defined() && record.lse.defined(), "{}: the record is empty; run attention_forward first", op);
  const DType dtype = x.dtype();
  const Device device = x.device();
  const auto scratch = [&](const Shape& shape) { return Tensor::empty(shape, dtype, device); };

  // wo, then attention.
  const Tensor d_attention_out = scratch(record.attention_out.shape());  // [B, S, H, V]
  ops::linear_backward(d_attention_out.view(Shape{e.tokens, e.heads * e.v}), grads.wo, dout,
                       record.attention_out.view(Shape{e.tokens, e.heads * e.v}), w.wo);
  const Tensor dq = scratch(record.q.shape());  // [B, S, H, qk]
  const Tensor dk = scratch(record.k.shape());  // [B, S, H, qk]
  const Tensor dv = scratch(record.v.shape());  // [B, S, H, V]
  ops::attention_backward(dq, dk, dv, d_attention_out, record.q, record.k, record.v, record.attention_out, record.lse,
                          mask_documents(args, batch), attention_options(args));

  // Query: un-rotate dq_pe, then the projections back to x; dx gets the query's share first (overwritten).
  rotate_rope_columns(dq.view(Shape{e.tokens, e.heads, e.qk}), e.nope, e.rope, batch, Rotation::backward);
  const Tensor dq_heads = dq.view(Shape{e.tokens, e.heads * e.qk});  // [T, H·qk]
  if (e.q_lora == 0) {
    ops::linear_backward(dx, grads.wq, dq_heads, x, w.wq);
  } else {
    const Tensor d_q_latent_normed = scratch(record.q_latent_normed.shape());  // [T, q_lora]
    ops::linear_backward(d_q_latent_normed, grads.wq_b, dq_heads, record.q_latent_normed, w.wq_b);
    const Tensor d_q_latent = scratch(record.q_latent.shape());  // [T, q_lora]
    ops::rmsnorm_backward(d_q_latent, grads.q_norm, d_q_latent_normed, record.q_latent, w.q_norm, record.q_latent_rstd);
    ops::linear_backward(dx, grads.wq_a, d_q_latent, x, w.wq_a);
  }

  // KV: [dk_nope | dv] per head through wkv_b and kv_norm to dc; dk_pe summed over heads and un-rotated.
  const Tensor dkv = scratch(Shape{e.tokens, e.heads, e.nope + e.v});  // [T, H, nope + V]
  const Tensor dk_heads = dk.view(Shape{e.tokens, e.heads, e.qk});     // [T, H, qk]
  ops::copy_head_columns(dkv, 0, dk_heads, 0, e.nope);
  ops::copy_head_columns(dkv, e.nope, dv.view(Shape{e.tokens, e.heads, e.v}), 0, e.v);
  const Tensor d_kv_latent_normed = scratch(record.kv_latent_normed.shape());  // [T, kv_lora]
  ops::linear_backward(d_kv_latent_normed, grads.wkv_b, dkv.view(Shape{e.tokens, e.heads * (e.nope + e.v)}),
                       record.kv_latent_normed, w.wkv_b);
  const Tensor d_kv_latent = scratch(record.kv_latent.shape());  // [T, kv_lora]
  ops::rmsnorm_backward(d_kv_latent, grads.kv_norm, d_kv_latent_normed, record.kv_latent, w.kv_norm,
                        record.kv_latent_rstd);
  const Tensor dkv_a = scratch(Shape{e.tokens, 1, e.kv_lora + e.rope});  // [T, 1, kv_lora + rope]
  ops::copy_head_columns(dkv_a, 0, d_kv_latent.view(Shape{e.tokens, 1, e.kv_lora}), 0, e.kv_lora);
  ops::copy_head_columns(dkv_a, e.kv_lora, dk_heads, e.nope, e.rope);  // sum over heads
  rotate_rope_columns(dkv_a, e.kv_lora, e.rope, batch, Rotation::backward);

  // dx += the KV path's share.
  const Tensor dx_kv = dx.defined() ? scratch(x.shape()) : Tensor{};  // [T, dim]
  ops::linear_backward(dx_kv, grads.wkv_a, dkv_a.view(Shape{e.tokens, e.kv_lora + e.rope}), x, w.wkv_a);
  if (dx.defined()) ops::add(dx, dx, dx_kv);
}

void make_rope_tables(BatchContext& batch, const ModelArgs& args, DType dtype, Device device) {
  const ops::RopeConfig config{.rope_dim = args.qk_rope_head_dim,
                               .theta = args.rope_theta,
                               .factor = args.rope_factor,
                               .beta_fast = args.beta_fast,
                               .beta_slow = args.beta_slow,
                               .original_seq_len = args.original_seq_len,
                               .yarn = args.yarn};
  // Built once by the CPU reference, then copied to the device.
  const Shape shape{args.max_seq_len, args.qk_rope_head_dim / 2};
  const Tensor cos = Tensor::empty(shape, dtype);
  const Tensor sin = Tensor::empty(shape, dtype);
  ops::rope_table(cos, sin, config);
  batch.rope_cos = device == Device::cpu ? cos : cos.to(device);
  batch.rope_sin = device == Device::cpu ? sin : sin.to(device);
}

}  // namespace dsv3::model
