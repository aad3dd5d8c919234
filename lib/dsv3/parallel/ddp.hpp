// ReplicaGradientReducer: the replicated side of data parallelism (DDP, and the dp_replicate dimension of HSDP).
// The ranks of the replicate group hold the same shards and must apply the same summed gradients, so each unit's
// gradient shard is all-reduced over the group as one bucket the moment it is final — during the backward of the
// units below it — and finish() waits for the last ones before the optimizer runs. With gradient accumulation
// the buckets are reduced once per optimizer step, after the last micro-batch (DDP's no_sync for the others).
#pragma once

#include "dsv3/comm/communicator.hpp"
#include "dsv3/parallel/communication_volume.hpp"
#include "dsv3/parallel/shard_layout.hpp"

#include <vector>

namespace dsv3::parallel {

class ReplicaGradientReducer {
 public:
  // replicate: the dp_replicate communicator; shard_grads: this rank's gradient shard arena.
  ReplicaGradientReducer(const ShardLayout& layout, comm::Communicator* replicate, const Tensor& shard_grads,
                         CommunicationVolume& volume);

  bool active() const { return replicate_ != nullptr && replicate_->size() > 1; }
  // Starts the all-reduce of `unit`'s gradient shard in `group`, whose value for the step is final.
  void reduce(std::int64_t unit, ShardGroup group);
  // Waits for every all-reduce started.
  void finish();

 private:
  const ShardLayout& layout_;
  comm::Communicator* replicate_;
  Tensor shard_grads_;
  CommunicationVolume& volume_;
  std::vector<comm::Request> in_flight_;
};

}  // namespace dsv3::parallel
