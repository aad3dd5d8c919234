// Scaled dot-product attention, flash-attention style: forward keeps only the per-row log-sum-exp, backward
// recomputes the probabilities tile by tile, so no seq×seq matrix is ever stored. The query/key head dim may
// differ from the value head dim (MLA: 192 and 128).
#pragma once

#include "dsv3/ops/common.hpp"

namespace dsv3::ops {

enum class AttentionMask {
  causal,           // query i sees keys j ≤ i
  document_causal,  // and only keys of its own document: document_ids[j] == document_ids[i]
};

struct AttentionOptions {
  double scale = 0.0;  // multiplies q·k; REFERENCE.md: qk_head_dim^-0.5 · m²
  AttentionMask mask = AttentionMask::causal;
};

// q, k: [B, S, H, Dqk]; v: [B, S, H, Dv]; out: [B, S, H, Dv]; lse: [B, H, S] (natural log-sum-exp of each
// query row's scaled, masked scores); document_ids: i32 [B, S] for document_causal, undefined for causal.
// All float tensors share one dtype (f32 or f64 on the CPU; f32 or bf16 on CUDA), except lse on CUDA: always f32
// there, as a softmax statistic.
void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& document_ids, const AttentionOptions& options, Stream stream = {});
// dq, dk, dv overwritten.
void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& document_ids, const AttentionOptions& options, Stream stream = {});

}  // namespace dsv3::ops
