// FullyShardedUnits: the gathered side of FSDP (DESIGN.md "Parallelism"). A rank keeps only its shards of the
// parameters and gradients (ShardLayout); a unit's full parameters exist only while the unit runs, in a few
// gathered buffers that the units take turns in:
//
//   forward   gather(u) waits for unit u's all-gather (started earlier by prefetch), then prefetch(u + 1) starts
//             the next unit's into the other buffer while u computes;
//   backward  the same downwards; unit u's gradients accumulate in a gathered gradient buffer, zeroed by
//             begin_backward(u) and reduce-scattered into the gradient shards by reduce_scatter(u), in flight while
//             the units below compute. From the second micro-batch of a step on, the reduce-scatter lands in a
//             scratch shard that is then added to the accumulated one.
//
// With reshard_after_forward, two parameter buffers serve every unit (unit u uses buffer u mod 2): a unit is
// gathered again for its backward, except where it is still resident (the head, whose backward follows its
// forward at once, and units 0 and 1 from one micro-batch to the next). Without it, each unit keeps its own buffer
// and is gathered once per optimizer step. Gradients always use two buffers. Only groups of more than one rank
// are gathered; a group of one rank works on its shard directly.
#pragma once

#include "dsv3/comm/communicator.hpp"
#include "dsv3/parallel/communication_volume.hpp"
#include "dsv3/parallel/shard_layout.hpp"

#include <array>
#include <functional>
#include <vector>

namespace dsv3::parallel {

class FullyShardedUnits {
 public:
  // Called when a unit's gradient shard of a group holds this micro-batch's sum (accumulated with the earlier ones).
  using ReducedCallback = std::function<void(std::int64_t unit, ShardGroup group)>;

  // shard_params, shard_grads: this rank's shard arenas (layout.shard_numel() elements). groups: the
  // communicators of the dense and the expert sharding groups, in kShardGroups order.
  FullyShardedUnits(const ShardLayout& layout, std::array<comm::Communicator*, 2> groups, const Tensor& shard_params,
                    const Tensor& shard_grads, bool reshard_after_forward, CommunicationVolume& volume,
                    ReducedCallback on_reduced);
  ~FullyShardedUnits();  // waits for the collectives in flight
  FullyShardedUnits(const FullyShardedUnits&) = delete;
  FullyShardedUnits& operator=(const FullyShardedUnits&) = delete;

  // The gathered parameters / gradients of `unit` in a sharded group: [layout.unit(unit, group).numel], at a
  // place fixed for the whole run (the model binds its weight views to them once).
  Tensor params(std::int64_t unit, ShardGroup group) const;
  Tensor grads(std::int64_t unit, ShardGroup group) const;

  // Starts gathering `unit` unless its buffer holds it already or is receiving it.
  void prefetch(std::int64_t unit);
  // Returns once `unit`'s parameters are gathered.
  void gather(std::int64_t unit);
  // The shards changed (optimizer step): every gathered unit is stale.
  void invalidate();

  // Takes the gradient buffer of `unit` (finishing the reduction it held) and zeroes it.
  void begin_backward(std::int64_t unit);
  // Starts reducing `unit`'s gradients into the shards; accumulate = false for the first micro-batch of a step.
  void reduce_scatter(std::int64_t unit, bool accumulate);
  // Waits for every reduction in flight.
  void finish_reductions();

  // Bytes of the gathered buffers (parameters, gradients, scratch shards): transient state, not per parameter.
  std::int64_t buffer_bytes() const;

 private:
  struct ParamBuffer;
  struct GradBuffer;
  ParamBuffer& param_buffer(std::int64_t unit);
  GradBuffer& grad_buffer(std::int64_t unit);
  const ParamBuffer& param_buffer(std::int64_t unit) const;
  const GradBuffer& grad_buffer(std::int64_t unit) const;
  Tensor shard(const Tensor& arena, std::int64_t unit, ShardGroup group) const;
  void finish_reduction(GradBuffer& buffer);

  const ShardLayout& layout_;
  std::array<comm::Communicator*, 2> groups_;
  Tensor shard_params_;
  Tensor shard_grads_;
  bool reshard_after_forward_;
  CommunicationVolume& volume_;
  ReducedCallback on_reduced_;
  std::vector<ParamBuffer> param_buffers_;
  std::vector<GradBuffer> grad_buffers_;
};

}  // namespace dsv3::parallel
