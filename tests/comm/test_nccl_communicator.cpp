// Runs where a GPU is visible (ctest label gpu): the NCCL communicator passes the checks the MPI one passes, on
// CUDA tensors, over the world and over every group of a grid. One rank per GPU: NCCL refuses two ranks of one
// communicator on the same device, so this runs on as many ranks as there are GPUs (NPROCS 1 by default).
#include "communicator_checks.hpp"

#include "dsv3/comm/nccl/nccl_communicator.hpp"
#include "dsv3/comm/process_grid.hpp"

#include <doctest/doctest.h>

using namespace dsv3;
using namespace dsv3::comm;

TEST_CASE("the NCCL communicator passes the checks of every communicator") {
  REQUIRE_MESSAGE(nccl_built(), "dsv3 was built without CUDA: run this test (label gpu) in a CUDA build");
  REQUIRE_MESSAGE(cuda_available(), "no GPU visible: run this test (label gpu) on a machine with one");
  const auto world = make_nccl_communicator(MPI_COMM_WORLD, "world");
  testing::check_every_operation(*world, Device::cuda);
  testing::check_argument_errors(*world, Device::cuda);

  const ProcessGrid grid(MPI_COMM_WORLD, {});
  for (const Group group : kGroups) {
    const auto comm = make_nccl_communicator(grid.comm(group), std::string(group_name(group)));
    testing::check_every_operation(*comm, Device::cuda);
  }
}

TEST_CASE("a GPU grid's communicators take CUDA tensors through NCCL and host tensors through MPI") {
  REQUIRE_MESSAGE(cuda_available(), "no GPU visible: run this test (label gpu) on a machine with one");
  const ProcessGrid grid(MPI_COMM_WORLD, {}, Device::cuda);
  for (const Group group : kGroups) {
    testing::check_every_operation(grid.communicator(group), Device::cuda);
    testing::check_every_operation(grid.communicator(group), Device::cpu);
  }
}
