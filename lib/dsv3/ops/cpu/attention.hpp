#pragma once

#include "dsv3/ops/attention.hpp"

namespace dsv3::ops::cpu {

// Arguments already validated by the public ops of attention.hpp: contiguous [B, S, H, D] host tensors of one
// float dtype, document_ids i32 [B, S] for document_causal and undefined for causal.
void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& document_ids, const AttentionOptions& options);
void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& document_ids, const AttentionOptions& options);

}  // namespace dsv3::ops::cpu
