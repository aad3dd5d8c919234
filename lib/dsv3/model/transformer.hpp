// The whole DeepSeek-V3 model: embedding → blocks (pre-norm MLA + dense FFN or MoE) → final norm → output
// head → summed cross-entropy, with an explicit forward that fills a ModelRecord and a backward that consumes
// it (DESIGN.md "Computation"). Parameters and gradients live in one ParameterStore (flat arenas).
#pragma once

#include "dsv3/model/batch_context.hpp"
#include "dsv3/model/model_args.hpp"
#include "dsv3/model/parameters.hpp"
#include "dsv3/model/unit_hooks.hpp"
#include "dsv3/model/weights.hpp"

#include <cstdint>
#include <memory>
#include <vector>

namespace dsv3::model {

struct ModelRecord;  // defined in model_record.hpp by the implementation: per-micro-batch activations

struct TrainingOptions {
  double balance_loss_coeff = 0.0;  // α of the sequence-wise balance loss (REFERENCE.md §2); 0 = off
  bool force_load_balance = false;  // debug: route tokens round-robin instead of by score
};

struct ForwardResult {
  double loss_sum = 0.0;             // Σ cross-entropy over the valid targets of this micro-batch
  std::int64_t valid_targets = 0;    // targets ≠ ignore_index
  double balance_loss = 0.0;         // Σ over MoE layers of the sequence-wise balance loss (already × α)
};

// Parameters and gradients held by the caller (the shards and gathered unit buffers of lib/dsv3/parallel): the
// model binds its weight views through these lookups, by checkpoint name, and allocates no arenas of its own.
struct ExternalParameters {
  TensorLookup params;
  TensorLookup grads;
};

class Transformer {
 public:
  // dtype: f32 for training, f64 for gradient checks. Parameters are allocated, not initialised.
  Transformer(const ModelArgs& args, DType dtype = DType::f32, Device device = Device::cpu);
  // Weights and gradients bound to `external` (of `dtype` on `device`); parameters() is then an error.
  Transformer(const ModelArgs& args, const ExternalParameters& external, DType dtype, Device device = Device::cpu);

  const ModelArgs& args() const;
  ParameterStore& parameters();
  const ModelWeights& weights() const;
  const ModelWeights& grads() const;
  // Per layer: f32 [E] expert bias (selection only, not trained by the optimizer; undefined for dense layers).
  const std::vector<Tensor>& expert_biases() const;
  // Per layer: i64 [E] tokens routed to each expert since the last reset (undefined for dense layers).
  const std::vector<Tensor>& tokens_per_expert() const;
  void reset_tokens_per_expert();
  // Called around every unit's forward and backward from now on (nullptr: none, the default). Not owned.
  void set_unit_hooks(UnitHooks* hooks);

  // inputs: i32 [B, S] token ids; labels: i32 or i64 [B, S] (ignore_index −100 allowed);
  // document_ids: i32 [B, S], required when args.mask is document_causal (undefined otherwise).
  ForwardResult forward(ModelRecord& record, const Tensor& inputs, const Tensor& labels, const Tensor& document_ids,
                        const TrainingOptions& options = {});
  // Accumulates into grads() the gradient of loss_scale·loss_sum + balance_scale·balance_loss of the forward
  // that filled `record` (loss_scale is 1/(global count of valid targets) in training, REFERENCE.md §3).
  void backward(ModelRecord& record, double loss_scale, double balance_scale, const TrainingOptions& options = {});
  // Logits [B·S, vocab] of the last forward (for evaluation and parity checks).
  const Tensor& logits(const ModelRecord& record) const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace dsv3::model
