#include "dsv3/parallel/data_parallel.hpp"

#include "dsv3/ops/optim.hpp"
#include "dsv3/parallel/ddp.hpp"
#include "dsv3/parallel/fsdp.hpp"

#include <fmt/format.h>

#include <cmath>

namespace dsv3::parallel {

namespace {

int group_size(comm::Communicator* communicator) { return communicator ? communicator->size() : 1; }

int group_rank(comm::Communicator* communicator) { return communicator ? communicator->rank() : 0; }

std::string mebibytes(std::int64_t bytes) { return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20)); }

}  // namespace

struct DataParallel::State {
  std::array<comm::Communicator*, 2> shard_groups;
  comm::Communicator* replicate;
  bool reshard_after_forward;
  ShardLayout layout;
  Tensor params;  // [layout.shard_numel()]: this rank's shards
  Tensor grads;
  CommunicationVolume volume;
  ReplicaGradientReducer replicas;
  std::unique_ptr<FullyShardedUnits> fsdp;  // when a group is sharded
  std::int64_t micro_batches = 1;
  std::int64_t backward_passes = 0;  // of this step, completed

  State(const model::ModelArgs& args, DType dtype, Device device, const DataParallelGroups& groups, bool reshard)
      : shard_groups{groups.dense_shard, groups.expert_shard},
        replicate(groups.replicate),
        reshard_after_forward(reshard),
        layout(model::parameter_specs(args), args.n_layers,
               {group_size(groups.dense_shard), group_size(groups.expert_shard)}, dtype),
        params(Tensor::zeros(Shape{layout.shard_numel()}, dtype, device)),
        grads(Tensor::zeros(Shape{layout.shard_numel()}, dtype, device)),
        replicas(layout, groups.replicate, grads, volume) {
    if (layout.sharded(ShardGroup::dense) || layout.sharded(ShardGroup::expert)) {
      fsdp = std::make_unique<FullyShardedUnits>(layout, shard_groups, params, grads, reshard, volume,
                                                 [this](std::int64_t unit, ShardGroup group) {
                                                   if (last_micro_batch()) replicas.reduce(unit, group);
                                                 });
    }
  }

  bool last_micro_batch() const { return backward_passes == micro_batches - 1; }
  comm::Communicator* group(ShardGroup g) const { return shard_groups[static_cast<int>(g)]; }

  // This rank's shard of a (unit, group) buffer in `arena`; for a group of one rank, the whole buffer.
  Tensor shard(const Tensor& arena, std::int64_t unit, ShardGroup g) const {
    const UnitShard& buffer = layout.unit(unit, g);
    return arena.rows(buffer.shard_offset, buffer.shard_offset + buffer.shard_numel);
  }

  // The view the model binds for parameter `name`: in the gathered buffer of its unit when its group is sharded,
  // in the shard arena otherwise.
  Tensor bind(const std::string& name, bool gradient) const {
    const std::size_t i = layout.index_of(name);
    const Placement& place = layout.placement(i);
    const model::ParameterSpec& spec = layout.specs()[i];
    Tensor buffer;
    if (layout.sharded(place.group)) {
      buffer = gradient ? fsdp->grads(place.unit, place.group) : fsdp->params(place.unit, place.group);
    } else {
      buffer = shard(gradient ? grads : params, place.unit, place.group);
    }
    return buffer.rows(place.offset, place.offset + spec.shape.numel()).view(spec.shape);
  }
};

DataParallel::DataParallel(const model::ModelArgs& args, DType dtype, Device device, const DataParallelGroups& groups,
                           bool reshard_after_forward)
    : state_(std::make_unique<State>(args, dtype, device, groups, reshard_after_forward)) {}

DataParallel::~DataParallel() = default;

const ShardLayout& DataParallel::layout() const { return state_->layout; }
const Tensor& DataParallel::params() const { return state_->params; }
const Tensor& DataParallel::grads() const { return state_->grads; }
const CommunicationVolume& DataParallel::step_volume() const { return state_->volume; }

std::string DataParallel::mode() const {
  const State& s = *state_;
  const bool replicated = group_size(s.replicate) > 1;
  if (s.fsdp) return replicated ? "HSDP" : "FSDP";
  return replicated ? "DDP" : "single rank";
}

std::string DataParallel::describe() const {
  const State& s = *state_;
  std::string line = fmt::format(
      "{}: dense parameters sharded over {} rank(s) (dp_shard·cp), routed experts over {} "
      "(edp), replicated over {} (dp_replicate)",
      mode(), s.layout.ranks(ShardGroup::dense), s.layout.ranks(ShardGroup::expert), group_size(s.replicate));
  if (s.fsdp) line += s.reshard_after_forward ? ", resharded after forward" : ", kept gathered until the step";
  line += fmt::format("; per rank {} of parameter and gradient shards", mebibytes(shard_bytes()));
  if (s.fsdp) line += fmt::format(" + {} of gathered unit buffers", mebibytes(gathered_bytes()));
  return line;
}

model::ExternalParameters DataParallel::binding() {
  return {[this](const std::string& name) { return state_->bind(name, false); },
          [this](const std::string& name) { return state_->bind(name, true); }};
}

void DataParallel::initialize(std::uint64_t seed) {
  State& s = *state_;
  const auto& specs = s.layout.specs();
  // Unit by unit, so that at most one unit is ever whole on a rank.
  for (std::int64_t unit = 0; unit < s.layout.units(); ++unit) {
    std::vector<std::size_t> members;
    std::vector<model::ParameterSpec> unit_specs;
    for (const ShardGroup g : kShardGroups) {
      for (const std::size_t i : s.layout.unit(unit, g).parameters) {
        members.push_back(i);
        unit_specs.push_back(specs[i]);
      }
    }
    model::ParameterStore whole(unit_specs, s.params.dtype(), s.params.device());
    whole.initialize(seed);
    for (const std::size_t i : members) {
      const auto piece = s.layout.piece(i, group_rank(s.group(s.layout.placement(i).group)));
      if (!piece) continue;
      const Tensor values = whole.param(specs[i].name).view(Shape{specs[i].shape.numel()});
      s.params.rows(piece->shard_offset, piece->shard_offset + (piece->end - piece->begin))
          .copy_from(values.rows(piece->begin, piece->end));
    }
  }
  parameters_updated();
}

void DataParallel::begin_step(std::int64_t micro_batches) {
  State& s = *state_;
  DSV3_CHECK(micro_batches >= 1, "DataParallel::begin_step: {} micro-batches", micro_batches);
  s.micro_batches = micro_batches;
  s.backward_passes = 0;
  s.volume = CommunicationVolume{};
  s.grads.zero();
}

void DataParallel::finish_gradients() {
  State& s = *state_;
  DSV3_CHECK(s.backward_passes == s.micro_batches,
             "DataParallel::finish_gradients: {} backward passes in a step of {} micro-batches", s.backward_passes,
             s.micro_batches);
  if (s.fsdp) s.fsdp->finish_reductions();
  s.replicas.finish();
}

double DataParallel::grad_norm() {
  State& s = *state_;
  double total = 0.0;
  for (const ShardGroup g : kShardGroups) {
    const auto [begin, end] = s.layout.group_range(g);
    if (begin == end) continue;
    const Tensor squares = Tensor::empty(Shape{1}, DType::f64);
    *squares.data<double>() = ops::sum_of_squares(s.grads.rows(begin, end));
    // Shards of a group partition its parameters: their squares add up. Replicas hold the same values, so the
    // replicate group takes no part.
    if (s.layout.sharded(g)) s.group(g)->all_reduce(squares, comm::ReduceOp::sum).wait();
    total += *squares.data<double>();
  }
  return std::sqrt(total);
}

void DataParallel::parameters_updated() {
  if (state_->fsdp) state_->fsdp->invalidate();
}

Tensor DataParallel::full_parameter(std::string_view name) {
  State& s = *state_;
  const std::size_t i = s.layout.index_of(name);
  const Placement& place = s.layout.placement(i);
  const model::ParameterSpec& spec = s.layout.specs()[i];
  Tensor buffer = s.shard(s.params, place.unit, place.group);
  if (s.layout.sharded(place.group)) {
    Tensor gathered =
        Tensor::empty(Shape{s.layout.unit(place.unit, place.group).numel}, s.params.dtype(), s.params.device());
    s.group(place.group)->all_gather(gathered, buffer).wait();
    buffer = gathered;
  }
  return buffer.rows(place.offset, place.offset + spec.shape.numel()).view(spec.shape).clone();
}

std::int64_t DataParallel::shard_bytes() const {
  return static_cast<std::int64_t>(state_->params.nbytes() + state_->grads.nbytes());
}

double DataParallel::textbook_step_bytes(std::int64_t micro_batches) const {
  const State& s = *state_;
  const double replicas = group_size(s.replicate);
  const double replica_share = 2.0 * (replicas - 1.0) / replicas;
  double bytes = 0.0;
  for (const ShardGroup g : kShardGroups) {
    double parameter_bytes = 0.0;
    for (std::int64_t unit = 0; unit < s.layout.units(); ++unit) {
      for (const std::size_t i : s.layout.unit(unit, g).parameters) {
        parameter_bytes += static_cast<double>(s.layout.specs()[i].shape.numel());
      }
    }
    parameter_bytes *= static_cast<double>(dtype_size(s.params.dtype()));
    const double shards = s.layout.ranks(g);
    bytes += static_cast<double>(micro_batches) * 3.0 * (shards - 1.0) / shards * parameter_bytes +
             replica_share * parameter_bytes / shards;
  }
  return bytes;
}

std::int64_t DataParallel::gathered_bytes() const { return state_->fsdp ? state_->fsdp->buffer_bytes() : 0; }

void DataParallel::before_forward(std::int64_t unit) {
  State& s = *state_;
  if (!s.fsdp) return;
  s.fsdp->gather(unit);
  if (unit + 1 < s.layout.units()) s.fsdp->prefetch(unit + 1);
}

// Resharding after forward needs no action: the unit's buffer is simply the next one's to gather into.
void DataParallel::after_forward(std::int64_t) {}

void DataParallel::before_backward(std::int64_t unit) {
  State& s = *state_;
  if (!s.fsdp) return;
  s.fsdp->gather(unit);
  if (unit > 0) s.fsdp->prefetch(unit - 1);
  s.fsdp->begin_backward(unit);
}

void DataParallel::after_backward(std::int64_t unit) {
  State& s = *state_;
  if (s.fsdp) s.fsdp->reduce_scatter(unit, s.backward_passes > 0);
  if (s.last_micro_batch()) {
    for (const ShardGroup g : kShardGroups) {
      if (!s.layout.sharded(g)) s.replicas.reduce(unit, g);  // sharded groups: once their reduce-scatter is done
    }
  }
  if (unit > 0) return;
  // The micro-batch's backward is complete. Its reduce-scatters finish now, while it is known which micro-batch
  // they belong to (the last one's results go on to the replicas).
  if (s.fsdp) s.fsdp->finish_reductions();
  ++s.backward_passes;
}

}  // namespace dsv3::parallel
