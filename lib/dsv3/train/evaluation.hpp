// Evaluation of a checkpoint's model (dsv3_eval): load the weights and expert biases, run the forward on token
// sequences, return per-position logits, the loss and the perplexity.
#pragma once

#include "dsv3/model/transformer.hpp"
#include "dsv3/train/model_checkpoint.hpp"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

namespace dsv3::train {

// The model of `path` (any dsv3 checkpoint; only /model is read, checksums verified), on this rank alone and on
// `device`, with RoPE tables for sequences of up to `max_seq_len` tokens.
std::unique_ptr<model::Transformer> load_model(const std::filesystem::path& path, std::int64_t max_seq_len,
                                               Device device = Device::cpu);

struct Evaluation {
  Tensor logits;  // f32 [B, S, vocab] on the host: position s predicts token s + 1
  double loss = 0.0;  // mean cross-entropy over the B·(S − 1) next-token targets
  std::int64_t targets = 0;
  double perplexity() const;
};

// `sequences`: B sequences of S ≥ 2 token ids each (the same S).
Evaluation evaluate(model::Transformer& model, const std::vector<std::vector<std::int32_t>>& sequences);

}  // namespace dsv3::train
