#include "dsv3/parallel/ddp.hpp"

namespace dsv3::parallel {

ReplicaGradientReducer::ReplicaGradientReducer(const ShardLayout& layout, comm::Communicator* replicate,
                                               const Tensor& shard_grads, CommunicationVolume& volume)
    : layout_(layout), replicate_(replicate), shard_grads_(shard_grads), volume_(volume) {}

void ReplicaGradientReducer::reduce(std::int64_t unit, ShardGroup group) {
  if (!active()) return;
  const UnitShard& bucket = layout_.unit(unit, group);
  if (bucket.shard_numel == 0) return;
  const Tensor gradients = shard_grads_.rows(bucket.shard_offset, bucket.shard_offset + bucket.shard_numel);
  in_flight_.push_back(replicate_->all_reduce(gradients, comm::ReduceOp::sum));
  volume_.add_all_reduce(static_cast<std::int64_t>(gradients.nbytes()), replicate_->size());
}

void ReplicaGradientReducer::finish() {
  for (comm::Request& request : in_flight_) request.wait();
  in_flight_.clear();
}

}  // namespace dsv3::parallel
