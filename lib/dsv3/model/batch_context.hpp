// What every layer needs to know about the micro-batch it runs on, built once per micro-batch.
#pragma once

#include "dsv3/tensor/tensor.hpp"

namespace dsv3::model {

struct BatchContext {
  std::int64_t batch = 0;    // B sequences
  std::int64_t seq_len = 0;  // S tokens each; T = B·S rows in every [T, ...] activation
  Tensor positions;          // i32 [T]: position of each token in its sequence, for RoPE
  Tensor document_ids;       // i32 [B, S] for the document-causal mask; undefined for causal
  Tensor rope_cos;           // [max_seq_len, qk_rope_head_dim/2], the compute dtype
  Tensor rope_sin;

  std::int64_t tokens() const { return batch * seq_len; }
};

// Activation records are allocated on first use and reused across micro-batches of the same shape.
// Returns `slot`, (re)allocated when it is undefined or differs in shape, dtype or device.
const Tensor& ensure_tensor(Tensor& slot, const Shape& shape, DType dtype, Device device);

}  // namespace dsv3::model
