#include "dsv3/parallel/fsdp.hpp"

#include "dsv3/ops/elementwise.hpp"

namespace dsv3::parallel {

namespace {

constexpr int kGradBuffers = 2;  // the unit in backward and the one whose reduce-scatter is still in flight

int index(ShardGroup group) { return static_cast<int>(group); }

}  // namespace

// A gathered parameter buffer per sharded group, and the unit it holds (or is receiving). The requests are
// declared last so that they are destroyed (which waits for them) before the buffers they write.
struct FullyShardedUnits::ParamBuffer {
  std::int64_t unit = -1;
  std::array<Tensor, 2> params;  // [max unit numel of the group]
  std::array<comm::Request, 2> gathers;
};

// A gathered gradient buffer per sharded group, with the reduce-scatter that drains it.
struct FullyShardedUnits::GradBuffer {
  std::int64_t unit = -1;         // whose gradients are in it and being reduced; −1: free
  bool accumulate = false;        // the reduce-scatter went to `reduced`, to be added to the shard
  std::array<Tensor, 2> grads;    // [max unit numel of the group]
  std::array<Tensor, 2> reduced;  // [max shard numel of the group]: scratch for accumulation
  std::array<comm::Request, 2> reductions;
};

FullyShardedUnits::FullyShardedUnits(const ShardLayout& layout, std::array<comm::Communicator*, 2> groups,
                                     const Tensor& shard_params, const Tensor& shard_grads, bool reshard_after_forward,
                                     CommunicationVolume& volume, ReducedCallback on_reduced)
    : layout_(layout),
      groups_(groups),
      shard_params_(shard_params),
      shard_grads_(shard_grads),
      reshard_after_forward_(reshard_after_forward),
      volume_(volume),
      on_reduced_(std::move(on_reduced)),
      param_buffers_(static_cast<std::size_t>(reshard_after_forward ? 2 : layout.units())),
      grad_buffers_(kGradBuffers) {
  const DType dtype = shard_params.dtype();
  const Device device = shard_params.device();
  for (const ShardGroup group : kShardGroups) {
    if (!layout.sharded(group)) continue;
    const int g = index(group);
    DSV3_CHECK(groups[g] != nullptr && groups[g]->size() == layout.ranks(group),
               "FSDP: the {} sharding group needs a communicator of {} ranks", shard_group_name(group),
               layout.ranks(group));
    const std::int64_t unit_numel = layout.max_unit_numel(group);
    if (unit_numel == 0) continue;  // no unit has parameters in this group (a model without MoE layers)
    for (std::size_t b = 0; b < param_buffers_.size(); ++b) {
      // Without resharding each unit has its own buffer, sized for it.
      const std::int64_t numel =
          reshard_after_forward ? unit_numel : layout.unit(static_cast<std::int64_t>(b), group).numel;
      if (numel > 0) param_buffers_[b].params[g] = Tensor::zeros(Shape{numel}, dtype, device);
    }
    for (GradBuffer& buffer : grad_buffers_) {
      buffer.grads[g] = Tensor::zeros(Shape{unit_numel}, dtype, device);
      buffer.reduced[g] = Tensor::zeros(Shape{unit_numel / layout.ranks(group)}, dtype, device);
    }
  }
}

FullyShardedUnits::~FullyShardedUnits() = default;

FullyShardedUnits::ParamBuffer& FullyShardedUnits::param_buffer(std::int64_t unit) {
  return param_buffers_[static_cast<std::size_t>(reshard_after_forward_ ? unit % 2 : unit)];
}
const FullyShardedUnits::ParamBuffer& FullyShardedUnits::param_buffer(std::int64_t unit) const {
  return param_buffers_[static_cast<std::size_t>(reshard_after_forward_ ? unit % 2 : unit)];
}
FullyShardedUnits::GradBuffer& FullyShardedUnits::grad_buffer(std::int64_t unit) {
  return grad_buffers_[static_cast<std::size_t>(unit % kGradBuffers)];
}
const FullyShardedUnits::GradBuffer& FullyShardedUnits::grad_buffer(std::int64_t unit) const {
  return grad_buffers_[static_cast<std::size_t>(unit % kGradBuffers)];
}

Tensor FullyShardedUnits::shard(const Tensor& arena, std::int64_t unit, ShardGroup group) const {
  const UnitShard& buffer = layout_.unit(unit, group);
  return arena.rows(buffer.shard_offset, buffer.shard_offset + buffer.shard_numel);
}

Tensor FullyShardedUnits::params(std::int64_t unit, ShardGroup group) const {
  return param_buffer(unit).params[index(group)].rows(0, layout_.unit(unit, group).numel);
}

Tensor FullyShardedUnits::grads(std::int64_t unit, ShardGroup group) const {
  return grad_buffer(unit).grads[index(group)].rows(0, layout_.unit(unit, group).numel);
}

void FullyShardedUnits::prefetch(std::int64_t unit) {
  ParamBuffer& buffer = param_buffer(unit);
  if (buffer.unit == unit) return;
  for (comm::Request& request : buffer.gathers) request.wait();
  buffer.unit = unit;
  const std::int64_t bytes_per_element = static_cast<std::int64_t>(dtype_size(shard_params_.dtype()));
  for (const ShardGroup group : kShardGroups) {
    const UnitShard& unit_shard = layout_.unit(unit, group);
    if (!layout_.sharded(group) || unit_shard.numel == 0) continue;
    const int g = index(group);
    buffer.gathers[g] = groups_[g]->all_gather(params(unit, group), shard(shard_params_, unit, group));
    volume_.add_all_gather(unit_shard.shard_numel * bytes_per_element, layout_.ranks(group));
  }
}

void FullyShardedUnits::gather(std::int64_t unit) {
  prefetch(unit);
  for (comm::Request& request : param_buffer(unit).gathers) request.wait();
}

void FullyShardedUnits::invalidate() {
  for (ParamBuffer& buffer : param_buffers_) {
    for (comm::Request& request : buffer.gathers) request.wait();
    buffer.unit = -1;
  }
}

void FullyShardedUnits::begin_backward(std::int64_t unit) {
  GradBuffer& buffer = grad_buffer(unit);
  finish_reduction(buffer);
  for (const ShardGroup group : kShardGroups) {
    if (layout_.sharded(group)) grads(unit, group).zero();
  }
}

void FullyShardedUnits::reduce_scatter(std::int64_t unit, bool accumulate) {
  GradBuffer& buffer = grad_buffer(unit);
  buffer.unit = unit;
  buffer.accumulate = accumulate;
  const std::int64_t bytes_per_element = static_cast<std::int64_t>(dtype_size(shard_grads_.dtype()));
  for (const ShardGroup group : kShardGroups) {
    const UnitShard& unit_shard = layout_.unit(unit, group);
    if (!layout_.sharded(group) || unit_shard.numel == 0) continue;
    const int g = index(group);
    const Tensor output =
        accumulate ? buffer.reduced[g].rows(0, unit_shard.shard_numel) : shard(shard_grads_, unit, group);
    buffer.reductions[g] = groups_[g]->reduce_scatter(output, grads(unit, group), comm::ReduceOp::sum);
    volume_.add_reduce_scatter(unit_shard.shard_numel * bytes_per_element, layout_.ranks(group));
  }
}

void FullyShardedUnits::finish_reduction(GradBuffer& buffer) {
  if (buffer.unit < 0) return;
  for (const ShardGroup group : kShardGroups) {
    const UnitShard& unit_shard = layout_.unit(buffer.unit, group);
    if (!layout_.sharded(group) || unit_shard.numel == 0) continue;
    const int g = index(group);
    buffer.reductions[g].wait();
    if (buffer.accumulate) {
      const Tensor accumulated = shard(shard_grads_, buffer.unit, group);
      ops::add(accumulated, accumulated, buffer.reduced[g].rows(0, unit_shard.shard_numel));
    }
    on_reduced_(buffer.unit, group);
  }
  buffer.unit = -1;
}

void FullyShardedUnits::finish_reductions() {
  for (GradBuffer& buffer : grad_buffers_) finish_reduction(buffer);
}

std::int64_t FullyShardedUnits::buffer_bytes() const {
  std::int64_t bytes = 0;
  for (const ParamBuffer& buffer : param_buffers_) {
    for (const Tensor& params : buffer.params)
      bytes += params.defined() ? static_cast<std::int64_t>(params.nbytes()) : 0;
  }
  for (const GradBuffer& buffer : grad_buffers_) {
    for (const Tensor& grads : buffer.grads) bytes += grads.defined() ? static_cast<std::int64_t>(grads.nbytes()) : 0;
    for (const Tensor& reduced : buffer.reduced)
      bytes += reduced.defined() ? static_cast<std::int64_t>(reduced.nbytes()) : 0;
  }
  return bytes;
}

}  // namespace dsv3::parallel
