#include "dsv3/comm/process_grid.hpp"

#include "dsv3/comm/device_routed_communicator.hpp"
#include "dsv3/comm/mpi_communicator.hpp"
#include "dsv3/comm/nccl/nccl_communicator.hpp"
#include "dsv3/core/error.hpp"

#include <fmt/format.h>

#include <cstdint>
#include <vector>

namespace dsv3::comm {

namespace {

void check_degree(const char* key, const char* name, int value) {
  DSV3_CHECK(value >= 1, "parallelism: {} ({}) = {} must be at least 1", key, name, value);
}

// "1, 2 or 4": the values of `ep` (with etp fixed) whose ep·etp divides `ranks`.
std::string fitting_ep(std::int64_t ranks, int etp) {
  std::vector<std::int64_t> fits;
  for (std::int64_t ep = 1; ep * etp <= ranks; ++ep) {
    if (ranks % (ep * etp) == 0) fits.push_back(ep);
  }
  std::string list;
  for (std::size_t i = 0; i < fits.size(); ++i) {
    list += fmt::format("{}{}", i == 0 ? "" : i + 1 == fits.size() ? " or " : ", ", fits[i]);
  }
  return list;
}

// Which dims of which view each group spans (MPI_Cart_sub's remain_dims), in the order of Group.
struct GroupSpan {
  bool expert_view;
  std::array<int, 5> remain;
};
constexpr std::array<GroupSpan, kGroupCount> kGroupSpans = {{
    {false, {1, 1, 1, 1, 1}},  // world
    {false, {1, 0, 0, 0, 0}},  // pp
    {false, {0, 1, 0, 0, 0}},  // dp_replicate
    {false, {0, 0, 1, 0, 0}},  // dp_shard
    {false, {0, 0, 0, 1, 0}},  // cp
    {false, {0, 0, 0, 0, 1}},  // tp
    {false, {0, 1, 1, 0, 0}},  // dp
    {false, {0, 0, 1, 1, 0}},  // dp_shard_cp
    {false, {0, 1, 1, 1, 0}},  // dp_cp
    {true, {0, 0, 0, 1, 0}},   // ep
    {true, {0, 0, 1, 0, 0}},   // edp
    {true, {0, 0, 0, 0, 1}},   // etp
}};

constexpr bool groups_in_enum_order() {
  for (int g = 0; g < kGroupCount; ++g) {
    if (kGroups[g] != static_cast<Group>(g)) return false;
  }
  return true;
}
static_assert(groups_in_enum_order(), "kGroups and kGroupSpans are indexed by Group");

void check_mpi(int code, const char* call) {
  DSV3_CHECK(code == MPI_SUCCESS, "ProcessGrid: {} failed (MPI error {})", call, code);
}

bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

}  // namespace

std::string ParallelDims::describe() const {
  return fmt::format("pp{} dp{}x{} cp{} tp{} | ep{} etp{}", pp, dp_replicate, dp_shard, cp, tp, ep, etp);
}

ParallelDims resolve_parallel_dims(ParallelDims dims, int world_size) {
  DSV3_CHECK(world_size >= 1, "parallelism: the job has {} ranks", world_size);
  check_degree("pipeline_parallel_degree", "pp", dims.pp);
  check_degree("data_parallel_replicate_degree", "dp_replicate", dims.dp_replicate);
  DSV3_CHECK(dims.dp_shard >= 1 || dims.dp_shard == -1,
             "parallelism: data_parallel_shard_degree (dp_shard) = {} must be at least 1, or -1 to fill the ranks "
             "the other degrees leave",
             dims.dp_shard);
  check_degree("context_parallel_degree", "cp", dims.cp);
  check_degree("tensor_parallel_degree", "tp", dims.tp);
  check_degree("expert_parallel_degree", "ep", dims.ep);
  check_degree("expert_tensor_parallel_degree", "etp", dims.etp);

  const std::int64_t others = std::int64_t{dims.pp} * dims.dp_replicate * dims.cp * dims.tp;
  const std::string dp_shard_hint =
      world_size % others == 0
          ? fmt::format("with the other degrees as given, dp_shard = {} would fit", world_size / others)
          : fmt::format("no dp_shard fits, since pp·dp_replicate·cp·tp = {} does not divide {}", others, world_size);
  if (dims.dp_shard == -1) {
    DSV3_CHECK(world_size % others == 0,
               "parallelism: data_parallel_shard_degree = -1 cannot fill the job's {} ranks: "
               "pp·dp_replicate·cp·tp = {}·{}·{}·{} = {} does not divide {}",
               world_size, dims.pp, dims.dp_replicate, dims.cp, dims.tp, others, world_size);
    dims.dp_shard = static_cast<int>(world_size / others);
  }
  const std::int64_t product = others * dims.dp_shard;
  DSV3_CHECK(product == world_size,
             "parallelism: pp·dp_replicate·dp_shard·cp·tp = {}·{}·{}·{}·{} = {} but the job has {} ranks; {}", dims.pp,
             dims.dp_replicate, dims.dp_shard, dims.cp, dims.tp, product, world_size, dp_shard_hint);

  DSV3_CHECK(dims.etp == 1 || dims.etp == dims.tp,
             "parallelism: expert_tensor_parallel_degree (etp) = {} must be 1 or tensor_parallel_degree (tp) = {}",
             dims.etp, dims.tp);
  // The expert view re-splits the ranks of dp_shard·cp·tp into [edp, ep, etp].
  const std::int64_t expert_ranks = std::int64_t{dims.dp_shard} * dims.cp * dims.tp;
  DSV3_CHECK(expert_ranks % (std::int64_t{dims.ep} * dims.etp) == 0,
             "parallelism: expert_parallel_degree (ep) = {} with etp = {} does not divide dp_shard·cp·tp = {}·{}·{} = "
             "{}, the ranks the experts are split over (edp = dp_shard·cp·tp / (ep·etp)); ep = {} would fit",
             dims.ep, dims.etp, dims.dp_shard, dims.cp, dims.tp, expert_ranks, fitting_ep(expert_ranks, dims.etp));
  return dims;
}

std::string_view group_name(Group group) {
  switch (group) {
    case Group::world:
      return "world";
    case Group::pp:
      return "pp";
    case Group::dp_replicate:
      return "dp_replicate";
    case Group::dp_shard:
      return "dp_shard";
    case Group::cp:
      return "cp";
    case Group::tp:
      return "tp";
    case Group::dp:
      return "dp";
    case Group::dp_shard_cp:
      return "dp_shard_cp";
    case Group::dp_cp:
      return "dp_cp";
    case Group::ep:
      return "ep";
    case Group::edp:
      return "edp";
    case Group::etp:
      return "etp";
  }
  return "?";
}

ProcessGrid::ProcessGrid(MPI_Comm world, const ParallelDims& dims, Device device) {
  int world_size = 0;
  check_mpi(MPI_Comm_size(world, &world_size), "MPI_Comm_size");
  dims_ = resolve_parallel_dims(dims, world_size);
  const std::array<int, 5> dense = {dims_.pp, dims_.dp_replicate, dims_.dp_shard, dims_.cp, dims_.tp};
  const std::array<int, 5> expert = {dims_.pp, dims_.dp_replicate, dims_.edp(), dims_.ep, dims_.etp};
  const std::array<int, 5> periodic = {0, 0, 0, 0, 0};
  // No reordering: a rank keeps its place in `world`, so tp neighbours are neighbouring ranks, which the
  // launcher places on one node.
  check_mpi(MPI_Cart_create(world, 5, dense.data(), periodic.data(), 0, &dense_view_), "MPI_Cart_create");
  check_mpi(MPI_Cart_create(world, 5, expert.data(), periodic.data(), 0, &expert_view_), "MPI_Cart_create");
  for (const Group group : kGroups) {
    const int g = index(group);
    const GroupSpan& span = kGroupSpans[g];
    check_mpi(MPI_Cart_sub(span.expert_view ? expert_view_ : dense_view_, span.remain.data(), &comms_[g]),
              "MPI_Cart_sub");
    MPI_Comm_rank(comms_[g], &ranks_[g]);
    MPI_Comm_size(comms_[g], &sizes_[g]);
    std::unique_ptr<Communicator> host = make_mpi_communicator(comms_[g], std::string(group_name(group)));
    communicators_[g] = device == Device::cpu ? std::move(host)
                                              : make_device_routed_communicator(
                                                    std::move(host),
                                                    make_nccl_communicator(comms_[g], std::string(group_name(group))));
  }
}

ProcessGrid::~ProcessGrid() {
  for (auto& communicator : communicators_) communicator.reset();
  if (mpi_finalized()) return;
  for (MPI_Comm& comm : comms_) {
    if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
  }
  if (expert_view_ != MPI_COMM_NULL) MPI_Comm_free(&expert_view_);
  if (dense_view_ != MPI_COMM_NULL) MPI_Comm_free(&dense_view_);
}

}  // namespace dsv3::comm
