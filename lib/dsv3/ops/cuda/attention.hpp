// CUDA kernels of ops/attention.hpp: flash attention (FlashAttention-2 structure) with bf16 tensor-core
// products and fp32 accumulation and softmax statistics. Arguments are checked by the dispatch.
//
// Layouts: q, k [B, S, H, Dqk]; v, out, dout [B, S, H, Dv]; dq, dk, dv like q, k, v; all in the storage type.
// lse [B, H, S] is f32 whatever the storage (it is a softmax statistic; the CPU keeps it in q's dtype).
// Head dims 1..256; any S, B, H. f32 storage is rounded to bf16 when tiles are loaded, as P and dS are before
// their products. The backward is deterministic: no atomics, every gradient element is written by one thread.
#pragma once

#include "dsv3/ops/cuda/backend.hpp"

namespace dsv3::cuda {

struct AttentionShape {
  std::int64_t batch = 0, seq = 0, heads = 0, qk_dim = 0, v_dim = 0;
  double scale = 0.0;                          // multiplies q·k
  const std::int32_t* document_ids = nullptr;  // [B, S] on the device: the document_causal mask; nullptr: causal
};

// Largest head dim the kernels take (Dqk and Dv).
inline constexpr std::int64_t kAttentionMaxHeadDim = 256;

void attention_forward(void* out, float* lse, const void* q, const void* k, const void* v, Float type,
                       const AttentionShape& shape, void* stream);
// dq, dk, dv overwritten. Uses a [B, H, S] f32 scratch allocated on the stream.
void attention_backward(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k, const void* v,
                        const void* out, const float* lse, Float type, const AttentionShape& shape, void* stream);

}  // namespace dsv3::cuda
