// UnitHooks: calls around each unit's forward and backward, so that data parallelism can act between them
// without the model knowing about communication: FSDP all-gathers a unit's parameters before it runs (and
// prefetches the next one), frees them after, and reduce-scatters its gradients once its backward is done; DDP
// starts the all-reduce of a unit's gradients while the units below it are still in backward.
//
// Units, in forward order: 0 = the token embedding, 1 + l = block l, n_layers + 1 = the final norm with the output
// head (and the loss). Backward visits them in reverse. A unit's gradients are final (for this micro-batch) when
// after_backward(unit) is called.
#pragma once

#include "dsv3/model/model_args.hpp"

#include <cstdint>

namespace dsv3::model {

inline std::int64_t unit_count(const ModelArgs& args) { return args.n_layers + 2; }

class UnitHooks {
 public:
  virtual ~UnitHooks() = default;
  virtual void before_forward(std::int64_t unit) = 0;
  virtual void after_forward(std::int64_t unit) = 0;
  virtual void before_backward(std::int64_t unit) = 0;
  virtual void after_backward(std::int64_t unit) = 0;
};

}  // namespace dsv3::model
