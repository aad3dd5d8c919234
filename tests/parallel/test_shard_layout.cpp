// ShardLayout: every element of every parameter is held by exactly one rank of its group, shards are equal and
// aligned, and routed experts go to the expert group.
#include "dsv3/parallel/shard_layout.hpp"

#include "dsv3/tensor/arena.hpp"

#include <doctest/doctest.h>

#include <vector>

using namespace dsv3;
using namespace dsv3::parallel;

namespace {

model::ModelArgs small_debug_model() {
  model::ModelArgs args = model::model_flavor("debugmodel");
  args.dim = 64;
  args.n_layers = 3;
  return args;
}

}  // namespace

TEST_CASE("parameter_unit: embedding, blocks, head; anything else is an error naming it") {
  CHECK(parameter_unit("tok_embeddings", 6) == 0);
  CHECK(parameter_unit("layers.0.attention.wq", 6) == 1);
  CHECK(parameter_unit("layers.5.moe.experts.w1", 6) == 6);
  CHECK(parameter_unit("norm", 6) == 7);
  CHECK(parameter_unit("output", 6) == 7);
  CHECK_THROWS_WITH_AS(parameter_unit("layers.6.ffn_norm", 6), doctest::Contains("'layers.6.ffn_norm'"), Error);
  CHECK_THROWS_WITH_AS(parameter_unit("bias", 6), doctest::Contains("'bias'"), Error);
}

TEST_CASE("shard layout: each element on exactly one rank, in equal aligned shards, experts in their own group") {
  const model::ModelArgs args = small_debug_model();
  const auto specs = model::parameter_specs(args);
  for (const auto ranks : {std::array<int, 2>{1, 1}, {2, 2}, {4, 4}, {3, 2}}) {
    CAPTURE(ranks[0]);
    CAPTURE(ranks[1]);
    const ShardLayout layout(specs, args.n_layers, ranks, DType::f32);
    CHECK(layout.units() == args.n_layers + 2);
    const std::int64_t alignment = Arena::padded_numel(1, DType::f32);
    std::int64_t held = 0;
    for (const ShardGroup group : kShardGroups) {
      const auto [begin, end] = layout.group_range(group);
      std::int64_t next = begin;
      for (std::int64_t unit = 0; unit < layout.units(); ++unit) {
        const UnitShard& shard = layout.unit(unit, group);
        CHECK(shard.shard_offset == next);  // end to end, unit after unit
        CHECK(shard.numel == shard.shard_numel * layout.ranks(group));
        CHECK(shard.shard_numel % alignment == 0);
        next += shard.shard_numel;
        // MoE blocks alone have routed experts.
        const bool moe_block = unit >= 1 && unit <= args.n_layers && args.is_moe_layer(unit - 1);
        if (group == ShardGroup::expert) CHECK((shard.numel > 0) == moe_block);
      }
      CHECK(next == end);
    }
    CHECK(layout.group_range(ShardGroup::expert)[1] == layout.shard_numel());
    for (std::size_t i = 0; i < specs.size(); ++i) {
      CAPTURE(specs[i].name);
      const Placement& place = layout.placement(i);
      CHECK(layout.index_of(specs[i].name) == i);
      CHECK((place.group == ShardGroup::expert) == specs[i].routed_expert);
      // The pieces of all ranks tile the parameter in rank order, each inside that rank's shard of the unit.
      std::int64_t covered = 0;
      const UnitShard& unit = layout.unit(place.unit, place.group);
      for (int rank = 0; rank < layout.ranks(place.group); ++rank) {
        const auto piece = layout.piece(i, rank);
        if (!piece) continue;
        CHECK(piece->begin == covered);
        CHECK(piece->end > piece->begin);
        CHECK(piece->shard_offset >= unit.shard_offset);
        CHECK(piece->shard_offset + (piece->end - piece->begin) <= unit.shard_offset + unit.shard_numel);
        // Its place in the gathered buffer: rank r's shard starts at r · shard_numel.
        CHECK(place.offset + piece->begin == rank * unit.shard_numel + (piece->shard_offset - unit.shard_offset));
        covered = piece->end;
        held += piece->end - piece->begin;
      }
      CHECK(covered == specs[i].shape.numel());
    }
    CHECK(held == model::count_parameters(args).total);
  }
}

TEST_CASE("shard layout: N ranks hold 1/N of the elements each, up to the padding") {
  const model::ModelArgs args = model::model_flavor("debugmodel");
  const auto specs = model::parameter_specs(args);
  const ShardLayout whole(specs, args.n_layers, {1, 1}, DType::f32);
  for (const int n : {2, 4, 8}) {
    const ShardLayout sharded(specs, args.n_layers, {n, n}, DType::f32);
    CHECK(sharded.shard_numel() * n >= whole.shard_numel());
    // At most one alignment granule of padding per (unit, group) buffer.
    CHECK(sharded.shard_numel() * n <= whole.shard_numel() + 2 * sharded.units() * n * 64);
  }
  CHECK_THROWS_WITH_AS(whole.index_of("layers.9.ffn_norm"), doctest::Contains("'layers.9.ffn_norm'"), Error);
}
