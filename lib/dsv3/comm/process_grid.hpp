// The process grid (DESIGN.md "Parallelism"): the ranks of the job as a Cartesian communicator over
// [pp, dp_replicate, dp_shard, cp, tp], tp fastest so tensor-parallel ranks are neighbours on a node, and a
// second view of the same ranks for the experts, [pp, dp_replicate, edp, ep, etp], where the expert dims
// re-split the ranks of dp_shard·cp·tp (edp = dp_shard·cp·tp / (ep·etp), etp ∈ {1, tp}). Every group below is
// an MPI_Cart_sub of one of the two views, so a rank's place in a group is its coordinate along the group's
// dims, row-major.
//
// The degrees are torchtitan's [parallelism] keys: pipeline_parallel_degree (pp),
// data_parallel_replicate_degree (dp_replicate), data_parallel_shard_degree (dp_shard, −1 = the ranks the
// others leave), context_parallel_degree (cp), tensor_parallel_degree (tp), expert_parallel_degree (ep),
// expert_tensor_parallel_degree (etp).
#pragma once

#include "dsv3/comm/communicator.hpp"

#include <mpi.h>

#include <array>
#include <memory>
#include <string>
#include <string_view>

namespace dsv3::comm {

struct ParallelDims {
  int pp = 1;
  int dp_replicate = 1;
  int dp_shard = -1;  // −1: fill the ranks the other degrees leave
  int cp = 1;
  int tp = 1;
  int ep = 1;
  int etp = 1;

  // Valid once resolved (dp_shard ≥ 1).
  int world_size() const { return pp * dp_replicate * dp_shard * cp * tp; }
  int dp() const { return dp_replicate * dp_shard; }  // the data loader's ranks
  int edp() const { return dp_shard * cp * tp / (ep * etp); }
  // "pp2 dp1x2 cp1 tp2 | ep4 etp1" (dp = dp_replicate x dp_shard).
  std::string describe() const;
};

// `dims` with dp_shard = −1 filled in and every degree checked against the job's world_size. Throws
// dsv3::Error saying what is wrong and what would fit, e.g. "pp·dp_replicate·dp_shard·cp·tp = 6 but the job
// has 4 ranks; with the other degrees as given, dp_shard = 2 would fit".
ParallelDims resolve_parallel_dims(ParallelDims dims, int world_size);

enum class Group {
  world,
  pp,
  dp_replicate,
  dp_shard,
  cp,
  tp,
  dp,           // dp_replicate × dp_shard: the data loader shards over it
  dp_shard_cp,  // dp_shard × cp: FSDP shards dense parameters over it
  dp_cp,        // dp_replicate × dp_shard × cp: loss normalisation and expert-load counts sum over it
  ep,           // expert view: experts are split over it
  edp,          // expert view: FSDP shards routed experts over it
  etp,          // expert view: expert tensor parallel
};
inline constexpr int kGroupCount = 12;
inline constexpr std::array<Group, kGroupCount> kGroups = {
    Group::world, Group::pp,          Group::dp_replicate, Group::dp_shard, Group::cp,  Group::tp,
    Group::dp,    Group::dp_shard_cp, Group::dp_cp,        Group::ep,       Group::edp, Group::etp};
std::string_view group_name(Group group);

class ProcessGrid {
 public:
  // Collective over `world`: resolves `dims` against its size (throwing on every rank alike when they do not
  // fit), builds both Cartesian views without reordering (grid rank = rank in `world`), every group, and a
  // Communicator per group: MPI for Device::cpu; for Device::cuda one that sends CUDA tensors through NCCL (made
  // here for every group, on the GPU current on this thread) and host tensors through MPI.
  ProcessGrid(MPI_Comm world, const ParallelDims& dims, Device device = Device::cpu);
  ~ProcessGrid();
  ProcessGrid(const ProcessGrid&) = delete;
  ProcessGrid& operator=(const ProcessGrid&) = delete;

  const ParallelDims& dims() const { return dims_; }
  MPI_Comm comm(Group group) const { return comms_[index(group)]; }
  int rank(Group group) const { return ranks_[index(group)]; }  // this rank's coordinate in the group
  int size(Group group) const { return sizes_[index(group)]; }
  // The Communicator of the group, made with the grid: making it later, on first use, would be a hidden
  // collective that deadlocks as soon as the ranks of a group first ask for it at different points.
  Communicator& communicator(Group group) const { return *communicators_[index(group)]; }
  std::string describe() const { return dims_.describe(); }

 private:
  static int index(Group group) { return static_cast<int>(group); }

  ParallelDims dims_;
  MPI_Comm dense_view_ = MPI_COMM_NULL;   // [pp, dp_replicate, dp_shard, cp, tp]
  MPI_Comm expert_view_ = MPI_COMM_NULL;  // [pp, dp_replicate, edp, ep, etp]
  std::array<MPI_Comm, kGroupCount> comms_{};
  std::array<int, kGroupCount> ranks_{};
  std::array<int, kGroupCount> sizes_{};
  std::array<std::unique_ptr<Communicator>, kGroupCount> communicators_;
};

}  // namespace dsv3::comm
