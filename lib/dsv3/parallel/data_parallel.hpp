// DataParallel: the data-parallel training of one model over its data-parallel ranks (DESIGN.md "Parallelism"),
// replicated (DDP), fully sharded (FSDP) or both (HSDP), as the sizes of its three groups say:
//
//   dense_shard   dp_shard·cp ranks: every parameter but the routed experts is sharded over them
//   expert_shard  edp ranks: the routed experts are sharded over them
//   replicate     dp_replicate ranks: hold the same shards; gradients are all-reduced over them
//
// DDP = replicate > 1 with shard groups of one rank; FSDP = sharded, replicate 1; HSDP = both; one rank = none.
// DataParallel owns this rank's parameter and gradient shards (ShardLayout) and hands the model views to bind
// (binding()): into the shards for groups of one rank, into the gathered unit buffers (FullyShardedUnits) for
// sharded groups. Installed as the model's UnitHooks it gathers and prefetches units around their forward and
// backward, reduce-scatters gradients as each unit's backward ends and all-reduces the final shards over the
// replicas (ReplicaGradientReducer), so communication runs while later units compute. The optimizer then works
// on params()/grads(), this rank's shards only.
//
// A step: begin_step(micro-batches), the model's forward and backward of each micro-batch, finish_gradients();
// grads() then holds this rank's shard of the gradient summed over every micro-batch of every data-parallel
// rank. After the optimizer has changed params(), parameters_updated().
#pragma once

#include "dsv3/comm/communicator.hpp"
#include "dsv3/model/model_args.hpp"
#include "dsv3/model/transformer.hpp"
#include "dsv3/model/unit_hooks.hpp"
#include "dsv3/parallel/communication_volume.hpp"
#include "dsv3/parallel/shard_layout.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace dsv3::parallel {

struct DataParallelGroups {
  comm::Communicator* dense_shard = nullptr;   // dp_shard·cp
  comm::Communicator* expert_shard = nullptr;  // edp
  comm::Communicator* replicate = nullptr;     // dp_replicate
};

class DataParallel final : public model::UnitHooks {
 public:
  // Parameters of `args` in `dtype` on `device`, sharded over `groups` (not owned; they must outlive this).
  // reshard_after_forward: free each unit's gathered parameters after its forward and gather them again for its
  // backward (torchtitan's default), instead of keeping every unit gathered until the optimizer step.
  DataParallel(const model::ModelArgs& args, DType dtype, Device device, const DataParallelGroups& groups,
               bool reshard_after_forward);
  ~DataParallel() override;
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  const ShardLayout& layout() const;
  std::string mode() const;      // "single rank", "DDP", "FSDP" or "HSDP"
  std::string describe() const;  // one line for the log: mode, groups, bytes per rank

  // What model::Transformer(args, binding(), dtype, device) binds its weights and gradients to.
  model::ExternalParameters binding();
  // Each rank fills its shard with the values ParameterStore::initialize(seed) gives the whole model.
  void initialize(std::uint64_t seed);

  // This rank's shards, [layout().shard_numel()]: what the optimizer updates and gradient clipping scales.
  const Tensor& params() const;
  const Tensor& grads() const;

  void begin_step(std::int64_t micro_batches);
  void finish_gradients();
  // The global L2 norm of the gradients, every element counted once (shards summed over their groups, not over
  // replicas). Collective over the shard groups.
  double grad_norm();
  void parameters_updated();

  // A copy of one parameter at its logical shape, gathered from the shards. Collective over the parameter's group.
  Tensor full_parameter(std::string_view name);

  // Bytes this rank holds for good (parameter and gradient shards) and for the units in flight (gathered buffers).
  std::int64_t shard_bytes() const;
  std::int64_t gathered_bytes() const;
  // What this rank has sent since the last begin_step.
  const CommunicationVolume& step_volume() const;
  // The textbook figure to hold it against, for P parameter bytes per group (padding excluded) and a step of
  // `micro_batches`: sharded over S ranks, 2 all-gathers and 1 reduce-scatter per micro-batch, 3(S − 1)/S · P
  // each, plus 2(R − 1)/R · P/S to all-reduce the shards over R replicas; not sharded, 2(R − 1)/R · P.
  double textbook_step_bytes(std::int64_t micro_batches) const;

  void before_forward(std::int64_t unit) override;
  void after_forward(std::int64_t unit) override;
  void before_backward(std::int64_t unit) override;
  void after_backward(std::int64_t unit) override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace dsv3::parallel
