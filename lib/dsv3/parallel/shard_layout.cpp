#include "dsv3/parallel/shard_layout.hpp"

#include "dsv3/core/error.hpp"
#include "dsv3/tensor/arena.hpp"

#include <algorithm>
#include <charconv>

namespace dsv3::parallel {

const char* shard_group_name(ShardGroup group) { return group == ShardGroup::dense ? "dense" : "expert"; }

std::int64_t parameter_unit(std::string_view name, std::int64_t n_layers) {
  if (name == "tok_embeddings") return 0;
  if (name == "norm" || name == "output") return n_layers + 1;
  constexpr std::string_view prefix = "layers.";
  DSV3_CHECK(name.starts_with(prefix), "parameter_unit: '{}' is not a parameter of the model", name);
  const std::string_view rest = name.substr(prefix.size());
  std::int64_t layer = -1;
  const auto [end, error] = std::from_chars(rest.data(), rest.data() + rest.size(), layer);
  DSV3_CHECK(error == std::errc() && end != rest.data() + rest.size() && *end == '.' && layer >= 0 && layer < n_layers,
             "parameter_unit: '{}' names no layer of a model with {} layers", name, n_layers);
  return layer + 1;
}

ShardLayout::ShardLayout(std::vector<model::ParameterSpec> specs, std::int64_t n_layers, std::array<int, 2> ranks,
                         DType dtype)
    : specs_(std::move(specs)), ranks_(ranks) {
  for (const int r : ranks_) DSV3_CHECK(r >= 1, "ShardLayout: a sharding group of {} ranks", r);
  const std::int64_t unit_count = n_layers + 2;
  for (auto& units : units_) units.resize(static_cast<std::size_t>(unit_count));
  placements_.resize(specs_.size());
  for (std::size_t i = 0; i < specs_.size(); ++i) {
    const model::ParameterSpec& spec = specs_[i];
    DSV3_CHECK(index_.emplace(spec.name, i).second, "ShardLayout: parameter '{}' appears twice", spec.name);
    const std::int64_t unit = parameter_unit(spec.name, n_layers);
    const ShardGroup group = spec.routed_expert ? ShardGroup::expert : ShardGroup::dense;
    UnitShard& buffer = units_[static_cast<int>(group)][static_cast<std::size_t>(unit)];
    placements_[i] = {unit, group, buffer.numel};
    buffer.numel += Arena::padded_numel(spec.shape.numel(), dtype);
    buffer.parameters.push_back(i);
  }
  // Pad each buffer so that it splits into equal, aligned shards, and lay the shards end to end, group by group.
  const std::int64_t alignment = Arena::padded_numel(1, dtype);
  std::int64_t offset = 0;
  for (const ShardGroup group : kShardGroups) {
    const int g = static_cast<int>(group);
    group_begin_[g] = offset;
    const std::int64_t granule = alignment * ranks_[g];
    for (UnitShard& buffer : units_[g]) {
      buffer.numel = (buffer.numel + granule - 1) / granule * granule;
      buffer.shard_numel = buffer.numel / ranks_[g];
      buffer.shard_offset = offset;
      offset += buffer.shard_numel;
    }
  }
  group_begin_[2] = offset;
  shard_numel_ = offset;
}

const UnitShard& ShardLayout::unit(std::int64_t unit, ShardGroup group) const {
  DSV3_CHECK(unit >= 0 && unit < units(), "ShardLayout: unit {} out of range [0, {})", unit, units());
  return units_[static_cast<int>(group)][static_cast<std::size_t>(unit)];
}

std::int64_t ShardLayout::max_unit_numel(ShardGroup group) const {
  std::int64_t largest = 0;
  for (const UnitShard& buffer : units_[static_cast<int>(group)]) largest = std::max(largest, buffer.numel);
  return largest;
}

std::size_t ShardLayout::index_of(std::string_view name) const {
  const auto found = index_.find(std::string(name));
  DSV3_CHECK(found != index_.end(), "ShardLayout: no parameter named '{}'", name);
  return found->second;
}

std::array<std::int64_t, 2> ShardLayout::group_range(ShardGroup group) const {
  const int g = static_cast<int>(group);
  return {group_begin_[g], group_begin_[g + 1]};
}

std::optional<ShardPiece> ShardLayout::piece(std::size_t parameter, int rank) const {
  DSV3_CHECK(parameter < specs_.size(), "ShardLayout::piece: parameter index {} out of range", parameter);
  const Placement& place = placements_[parameter];
  DSV3_CHECK(rank >= 0 && rank < ranks(place.group), "ShardLayout::piece: rank {} of a {} group of {} ranks", rank,
             shard_group_name(place.group), ranks(place.group));
  const UnitShard& buffer = unit(place.unit, place.group);
  // Rank `rank` holds buffer elements [first, last); the parameter occupies [offset, offset + numel).
  const std::int64_t first = rank * buffer.shard_numel, last = first + buffer.shard_numel;
  const std::int64_t begin = std::max(first, place.offset);
  const std::int64_t end = std::min(last, place.offset + specs_[parameter].shape.numel());
  if (begin >= end) return std::nullopt;
  return ShardPiece{begin - place.offset, end - place.offset, buffer.shard_offset + (begin - first)};
}

}  // namespace dsv3::parallel
