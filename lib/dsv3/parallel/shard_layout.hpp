// ShardLayout: where every parameter lives under (fully sharded) data parallelism (DESIGN.md "Computation",
// "Parallelism").
//
// The model is cut into units (model/unit_hooks.hpp: embedding, each block, final norm + output) and each unit's
// parameters into two sharding groups: the routed experts, sharded over the expert-data-parallel ranks (edp), and
// everything else, sharded over dp_shard·cp. One (unit, group) is one flat buffer — its parameters in spec order,
// each starting on the arena alignment — padded to a multiple of (ranks of the group × alignment); rank r of the
// group holds the r-th equal piece of it, its shard. So gathering a unit, or reduce-scattering its gradients, is
// one collective per group, whatever the number of tensors. (torchtitan's FSDP2 splits each parameter on dim 0
// instead; the flat split moves the same bytes in fewer calls.) A group of one rank is not sharded: its shard is
// the whole buffer.
//
// A rank's shards lie end to end in one arena of shard_numel() elements — the dense shards of units 0..U−1, then
// the expert shards of units 0..U−1 — so the optimizer and gradient clipping sweep one buffer, and each group's
// part is one range (for its share of the gradient norm). Every rank of a group has the same offsets.
//
// piece() maps a parameter to the elements a given rank holds and where they sit in its arena: what checkpoints
// need to write each parameter at its logical shape from any layout.
#pragma once

#include "dsv3/model/model_args.hpp"
#include "dsv3/model/parameters.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dsv3::parallel {

enum class ShardGroup { dense = 0, expert = 1 };
inline constexpr std::array<ShardGroup, 2> kShardGroups = {ShardGroup::dense, ShardGroup::expert};
const char* shard_group_name(ShardGroup group);  // "dense", "expert"

// The unit a parameter belongs to: 0 for tok_embeddings, 1 + l for layers.l.*, n_layers + 1 for norm and output.
std::int64_t parameter_unit(std::string_view name, std::int64_t n_layers);

// One (unit, group) buffer.
struct UnitShard {
  std::int64_t numel = 0;               // of the gathered buffer, padding included; a multiple of the group's ranks
  std::int64_t shard_numel = 0;         // numel / ranks of the group
  std::int64_t shard_offset = 0;        // where this unit's shard starts in the shard arena
  std::vector<std::size_t> parameters;  // indices into specs(), in buffer order
};

// Where one parameter sits in its unit's gathered buffer.
struct Placement {
  std::int64_t unit = 0;
  ShardGroup group = ShardGroup::dense;
  std::int64_t offset = 0;  // element offset in the (unit, group) buffer
};

// The part of one parameter that one rank holds.
struct ShardPiece {
  std::int64_t begin = 0;         // first element of the flattened parameter held
  std::int64_t end = 0;           // one past the last
  std::int64_t shard_offset = 0;  // where element `begin` lies in that rank's shard arena
};

class ShardLayout {
 public:
  // ranks: of the dense group (dp_shard·cp) and of the expert group (edp), in kShardGroups order.
  ShardLayout(std::vector<model::ParameterSpec> specs, std::int64_t n_layers, std::array<int, 2> ranks, DType dtype);

  const std::vector<model::ParameterSpec>& specs() const { return specs_; }
  std::int64_t units() const { return static_cast<std::int64_t>(units_[0].size()); }
  int ranks(ShardGroup group) const { return ranks_[static_cast<int>(group)]; }
  bool sharded(ShardGroup group) const { return ranks(group) > 1; }
  const UnitShard& unit(std::int64_t unit, ShardGroup group) const;
  // The largest gathered buffer of the group over all units (the size of a buffer that can hold any of them).
  std::int64_t max_unit_numel(ShardGroup group) const;

  std::size_t index_of(std::string_view name) const;  // an error naming the parameter when there is none
  const Placement& placement(std::size_t parameter) const { return placements_[parameter]; }

  std::int64_t shard_numel() const { return shard_numel_; }
  // [begin, end) of the group's shards in the shard arena.
  std::array<std::int64_t, 2> group_range(ShardGroup group) const;
  // The elements of `parameter` that rank `rank` of its group holds; nullopt when it holds none of them.
  std::optional<ShardPiece> piece(std::size_t parameter, int rank) const;

 private:
  std::vector<model::ParameterSpec> specs_;
  std::array<int, 2> ranks_;
  std::unordered_map<std::string, std::size_t> index_;
  std::vector<Placement> placements_;
  std::array<std::vector<UnitShard>, 2> units_;
  std::array<std::int64_t, 3> group_begin_{};  // group g's shards: [group_begin_[g], group_begin_[g + 1])
  std::int64_t shard_numel_ = 0;
};

}  // namespace dsv3::parallel
