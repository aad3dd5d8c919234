// ParallelDims: resolving dp_shard = −1, and the messages for layouts that do not fit. ProcessGrid: every group
// of several layouts holds exactly the ranks that share the coordinates outside the group, in row-major order
// of the dense view [pp, dp_replicate, dp_shard, cp, tp] or the expert view [pp, dp_replicate, edp, ep, etp].
#include "dsv3/comm/process_grid.hpp"
#include "support/testing.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <vector>

using namespace dsv3;
using namespace dsv3::comm;

namespace {

using dsv3::testing::world_rank;
using dsv3::testing::world_size;

using Coordinates = std::array<int, 5>;

// Row-major coordinates of `rank` in a grid of extents `dims`.
Coordinates coordinates(int rank, const Coordinates& dims) {
  Coordinates coords{};
  for (int d = 4; d >= 0; --d) {
    coords[d] = rank % dims[d];
    rank /= dims[d];
  }
  return coords;
}

// The world ranks of `rank`'s group spanning the dims marked in `spans` of the view `dims`: those that agree
// with it on every other dim, in increasing order (row-major over the spanned dims).
std::vector<int> expected_members(int rank, const Coordinates& dims, const Coordinates& spans) {
  const Coordinates mine = coordinates(rank, dims);
  std::vector<int> members;
  for (int other = 0; other < world_size(); ++other) {
    const Coordinates theirs = coordinates(other, dims);
    bool same_group = true;
    for (int d = 0; d < 5; ++d) same_group = same_group && (spans[d] || theirs[d] == mine[d]);
    if (same_group) members.push_back(other);
  }
  return members;
}

// The world ranks of the group, as MPI has it.
std::vector<int> members(const ProcessGrid& grid, Group group) {
  std::vector<int> ranks(static_cast<std::size_t>(grid.size(group)));
  const int mine = world_rank();
  MPI_Allgather(&mine, 1, MPI_INT, ranks.data(), 1, MPI_INT, grid.comm(group));
  return ranks;
}

std::string resolve_error(const ParallelDims& dims, int world) {
  try {
    resolve_parallel_dims(dims, world);
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

}  // namespace

TEST_CASE("dp_shard = -1 fills the ranks the other degrees leave") {
  const ParallelDims filled = resolve_parallel_dims({.pp = 2, .tp = 2}, 8);
  CHECK(filled.dp_shard == 2);
  CHECK(filled.world_size() == 8);
  CHECK(filled.dp() == 2);
  CHECK(filled.edp() == 4);  // dp_shard·cp·tp / (ep·etp) = 2·1·2 / 1
  CHECK(resolve_parallel_dims({}, 6).dp_shard == 6);
  CHECK(resolve_parallel_dims({.dp_replicate = 2, .dp_shard = 3}, 6).dp_shard == 3);
}

TEST_CASE("layouts that do not fit the job say what would") {
  CHECK(resolve_error({.pp = 1, .dp_shard = 3, .tp = 2}, 4) ==
        "parallelism: pp·dp_replicate·dp_shard·cp·tp = 1·1·3·1·2 = 6 but the job has 4 ranks; with the other "
        "degrees as given, dp_shard = 2 would fit");
  CHECK(resolve_error({.dp_shard = 2, .tp = 3}, 4) ==
        "parallelism: pp·dp_replicate·dp_shard·cp·tp = 1·1·2·1·3 = 6 but the job has 4 ranks; no dp_shard fits, "
        "since pp·dp_replicate·cp·tp = 3 does not divide 4");
  CHECK(resolve_error({.pp = 3}, 4) ==
        "parallelism: data_parallel_shard_degree = -1 cannot fill the job's 4 ranks: pp·dp_replicate·cp·tp = "
        "3·1·1·1 = 3 does not divide 4");
  CHECK(resolve_error({.dp_shard = 4, .ep = 3}, 4) ==
        "parallelism: expert_parallel_degree (ep) = 3 with etp = 1 does not divide dp_shard·cp·tp = 4·1·1 = 4, the "
        "ranks the experts are split over (edp = dp_shard·cp·tp / (ep·etp)); ep = 1, 2 or 4 would fit");
  CHECK(resolve_error({.dp_shard = 2, .tp = 2, .ep = 4, .etp = 2}, 4) ==
        "parallelism: expert_parallel_degree (ep) = 4 with etp = 2 does not divide dp_shard·cp·tp = 2·1·2 = 4, the "
        "ranks the experts are split over (edp = dp_shard·cp·tp / (ep·etp)); ep = 1 or 2 would fit");
  CHECK(resolve_error({.dp_shard = 2, .tp = 2, .etp = 3}, 4) ==
        "parallelism: expert_tensor_parallel_degree (etp) = 3 must be 1 or tensor_parallel_degree (tp) = 2");
  CHECK(resolve_error({.tp = 0}, 4) == "parallelism: tensor_parallel_degree (tp) = 0 must be at least 1");
  CHECK(resolve_error({.dp_shard = 0}, 4) ==
        "parallelism: data_parallel_shard_degree (dp_shard) = 0 must be at least 1, or -1 to fill the ranks the "
        "other degrees leave");
}

TEST_CASE("the layout prints as pp dp cp tp | ep etp") {
  CHECK(resolve_parallel_dims({.pp = 2, .dp_shard = 2, .tp = 2, .ep = 4}, 8).describe() ==
        "pp2 dp1x2 cp1 tp2 | ep4 etp1");
  CHECK(resolve_parallel_dims({.dp_replicate = 2, .dp_shard = 2, .ep = 2}, 4).describe() ==
        "pp1 dp2x2 cp1 tp1 | ep2 etp1");
  CHECK(resolve_parallel_dims({.cp = 2, .tp = 2, .ep = 2, .etp = 2}, 8).describe() == "pp1 dp1x2 cp2 tp2 | ep2 etp2");
}

TEST_CASE("a layout that does not fit fails on every rank") {
  CHECK_THROWS_WITH_AS(ProcessGrid(MPI_COMM_WORLD, {.dp_shard = world_size() + 1}),
                       doctest::Contains(fmt::format("but the job has {} ranks", world_size()).c_str()), Error);
}

TEST_CASE("every group holds the ranks that share its other coordinates") {
  std::vector<ParallelDims> layouts = {{},
                                       {.dp_replicate = 2, .ep = 2},
                                       {.dp_shard = 2, .tp = 2, .ep = 2},
                                       {.dp_shard = 2, .tp = 2, .ep = 2, .etp = 2},
                                       {.pp = 2, .tp = 2, .etp = 2},
                                       {.dp_shard = 2, .cp = 2, .ep = 4}};
  if (world_size() == 8) {
    layouts = {{.pp = 2, .dp_shard = 2, .tp = 2, .ep = 2},
               {.dp_replicate = 2, .cp = 2, .tp = 2, .ep = 2, .etp = 2},
               {.dp_shard = 2, .cp = 2, .tp = 2, .ep = 4},
               {.dp_replicate = 2, .dp_shard = 4, .ep = 4}};
  }
  // Which dims each group spans, in its view; in the order of kGroups.
  constexpr std::array<Coordinates, kGroupCount> spans = {{{1, 1, 1, 1, 1},
                                                           {1, 0, 0, 0, 0},
                                                           {0, 1, 0, 0, 0},
                                                           {0, 0, 1, 0, 0},
                                                           {0, 0, 0, 1, 0},
                                                           {0, 0, 0, 0, 1},
                                                           {0, 1, 1, 0, 0},
                                                           {0, 0, 1, 1, 0},
                                                           {0, 1, 1, 1, 0},
                                                           {0, 0, 0, 1, 0},
                                                           {0, 0, 1, 0, 0},
                                                           {0, 0, 0, 0, 1}}};
  for (const ParallelDims& requested : layouts) {
    const ProcessGrid grid(MPI_COMM_WORLD, requested);
    const ParallelDims& d = grid.dims();
    INFO("grid ", grid.describe());
    const Coordinates dense = {d.pp, d.dp_replicate, d.dp_shard, d.cp, d.tp};
    const Coordinates expert = {d.pp, d.dp_replicate, d.edp(), d.ep, d.etp};
    for (const Group group : kGroups) {
      INFO("group ", group_name(group));
      const int g = static_cast<int>(group);
      const bool expert_group = group == Group::ep || group == Group::edp || group == Group::etp;
      const std::vector<int> expected = expected_members(world_rank(), expert_group ? expert : dense, spans[g]);
      CHECK(members(grid, group) == expected);
      CHECK(grid.size(group) == static_cast<int>(expected.size()));
      CHECK(grid.rank(group) ==
            static_cast<int>(std::find(expected.begin(), expected.end(), world_rank()) - expected.begin()));
    }
    CHECK(grid.size(Group::dp) == d.dp());
    CHECK(grid.size(Group::dp_shard_cp) == d.dp_shard * d.cp);
    CHECK(grid.size(Group::dp_cp) == d.dp() * d.cp);
    CHECK(grid.size(Group::edp) == d.edp());
    CHECK(grid.rank(Group::world) == world_rank());
  }
}

TEST_CASE("ep borrows the fastest ranks: tp first when etp = 1") {
  if (world_size() != 4) return;
  const ProcessGrid grid(MPI_COMM_WORLD, {.dp_shard = 2, .tp = 2, .ep = 2});
  const int rank = world_rank();
  // Ranks 0 1 | 2 3 are the tp pairs; ep takes the tp pair, edp the dp_shard pair.
  CHECK(members(grid, Group::ep) == std::vector<int>{rank & ~1, rank | 1});
  CHECK(members(grid, Group::edp) == std::vector<int>{rank & 1, (rank & 1) + 2});
  CHECK(members(grid, Group::etp) == std::vector<int>{rank});
  CHECK(grid.describe() == "pp1 dp1x2 cp1 tp2 | ep2 etp1");
}
