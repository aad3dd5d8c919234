// The MPI communicator on every group of several process grids (4 ranks, or 8): every operation with exact
// values, the same with max_count lowered so each operation is split into several MPI calls, argument errors,
// tags, and the NCCL factory of a build without CUDA.
#include "communicator_checks.hpp"

#include "dsv3/comm/mpi_communicator.hpp"
#include "dsv3/comm/nccl/nccl_communicator.hpp"
#include "dsv3/comm/process_grid.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

#include <vector>

using namespace dsv3;
using namespace dsv3::comm;

namespace {

using dsv3::testing::world_size;

// Layouts that use every group with more than one rank somewhere, for the job's rank count.
std::vector<ParallelDims> layouts() {
  if (world_size() == 8) {
    return {
        {.pp = 2, .dp_shard = 2, .tp = 2, .ep = 2},
        {.dp_replicate = 2, .dp_shard = 2, .cp = 2, .ep = 4},
    };
  }
  REQUIRE(world_size() == 4);
  return {
      {.dp_shard = 4, .ep = 4},
      {.dp_replicate = 2, .dp_shard = 2, .ep = 2},
      {.dp_shard = 2, .tp = 2, .ep = 2},            // ep over the tp pair, edp over dp_shard
      {.dp_shard = 2, .tp = 2, .ep = 2, .etp = 2},  // experts split over dp_shard, tensor-parallel inside
      {.pp = 2, .dp_shard = 1, .tp = 2, .etp = 2},
      {.dp_shard = 2, .cp = 2, .ep = 4},  // ep borrows dp_shard and cp
  };
}

}  // namespace

TEST_CASE("every operation on every group of several process grids") {
  for (const ParallelDims& dims : layouts()) {
    const ProcessGrid grid(MPI_COMM_WORLD, dims);
    INFO("grid ", grid.describe());
    for (const Group group : kGroups) {
      Communicator& comm = grid.communicator(group);
      CHECK(comm.name() == group_name(group));
      CHECK(comm.rank() == grid.rank(group));
      CHECK(comm.size() == grid.size(group));
      testing::check_every_operation(comm, Device::cpu);
    }
  }
}

TEST_CASE("operations over max_count elements go as several MPI calls") {
  // With at most 2 elements per MPI call every operation of the checks is split, the reduce-scatter and
  // all-gather into per-rank reduces and broadcasts.
  for (const ParallelDims& dims : layouts()) {
    const ProcessGrid grid(MPI_COMM_WORLD, dims);
    INFO("grid ", grid.describe());
    for (const Group group : kGroups) {
      const auto comm = make_mpi_communicator(grid.comm(group), std::string(group_name(group)), 2);
      testing::check_every_operation(*comm, Device::cpu);
    }
  }
}

TEST_CASE("wrong calls throw on every rank before communicating") {
  const ProcessGrid grid(MPI_COMM_WORLD, {.dp_replicate = 2});
  for (const Group group : {Group::world, Group::dp_replicate, Group::dp_shard, Group::tp}) {
    testing::check_argument_errors(grid.communicator(group), Device::cpu);
  }
  CHECK_THROWS_WITH_AS(make_mpi_communicator(MPI_COMM_WORLD, "world", 0), doctest::Contains("max_count 0"), Error);
}

TEST_CASE("messages match by tag, and the all-to-all tag is reserved") {
  const auto comm = make_mpi_communicator(MPI_COMM_WORLD, "world");
  const int next = (comm->rank() + 1) % comm->size();
  const int previous = (comm->rank() + comm->size() - 1) % comm->size();
  const Tensor first = testing::from_values(Shape{2}, DType::i64, {1.0 * comm->rank(), 1.0});
  const Tensor second = testing::from_values(Shape{2}, DType::i64, {1.0 * comm->rank(), 2.0});
  const Tensor first_in = Tensor::zeros(Shape{2}, DType::i64);
  const Tensor second_in = Tensor::zeros(Shape{2}, DType::i64);
  Request send_first = comm->send(first, next, 1);
  Request send_second = comm->send(second, next, 2);
  Request receive_second = comm->recv(second_in, previous, 2);  // posted in the other order
  Request receive_first = comm->recv(first_in, previous, 1);
  receive_first.wait();
  receive_second.wait();
  CHECK(testing::to_vector(first_in) == std::vector<double>{1.0 * previous, 1.0});
  CHECK(testing::to_vector(second_in) == std::vector<double>{1.0 * previous, 2.0});

  int* tag_upper_bound = nullptr;
  int found = 0;
  MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &tag_upper_bound, &found);
  REQUIRE(found);
  CHECK_THROWS_WITH_AS(comm->send(first, next, *tag_upper_bound), doctest::Contains("kept for all_to_all_v"), Error);
}

TEST_CASE("the communicator works on its own duplicate of the MPI communicator") {
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm original = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, 0, world_size() - 1 - world_rank, &original);  // the ranks in reverse order
  const auto comm = make_mpi_communicator(original, "reversed");
  MPI_Comm_free(&original);
  CHECK(comm->name() == "reversed");
  CHECK(comm->size() == world_size());
  CHECK(comm->rank() == world_size() - 1 - world_rank);
  testing::check_every_operation(*comm, Device::cpu);
}

TEST_CASE("without the CUDA backend the NCCL factory says so") {
  if (nccl_built()) return;  // the gpu-labelled test covers the real one
  CHECK_THROWS_WITH_AS(make_nccl_communicator(MPI_COMM_WORLD, "world"),
                       doctest::Contains("comm world: no NCCL communicator in this build"), Error);
}
