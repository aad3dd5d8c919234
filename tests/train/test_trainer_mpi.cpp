// The oracle of data parallelism (DESIGN.md "Parallelism"): the same global batch on 2 DDP ranks gives the losses
// of 1 rank, and the replicas stay bitwise identical (every layout: tests/parallel/test_data_parallel.cpp).
#include "dsv3/train/trainer.hpp"

#include "io/io_testing.hpp"
#include "train/train_testing.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <vector>

using namespace dsv3;
using namespace dsv3::testing;
using train::Trainer;

TEST_CASE("trainer on 2 DDP ranks: the losses of 1 rank with the same global batch, and identical weights on both") {
  int ranks = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  REQUIRE(ranks == 2);
  ScratchDirectory scratch("trainer-mpi");
  write_documents(scratch / "data.h5", counting_documents(60));
  const auto job = [&](const std::string& local_batch, const std::string& replicas) {
    return tiny_job(
        scratch / "data.h5", scratch.path(),
        {"--training.local_batch_size=" + local_batch, "--training.global_batch_size=4",
         "--parallelism.data_parallel_replicate_degree=" + replicas, "--parallelism.data_parallel_shard_degree=1"});
  };
  Trainer parallel(job("2", "2"), tiny_model(16), MPI_COMM_WORLD);
  Trainer single(job("4", "1"), tiny_model(16), MPI_COMM_SELF);  // every rank runs the reference for itself
  for (int step = 0; step < 5; ++step) {
    CAPTURE(step);
    const train::StepResult a = parallel.train_step();
    const train::StepResult b = single.train_step();
    CHECK(a.valid_targets == b.valid_targets);
    CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-5));
    CHECK(a.grad_norm == doctest::Approx(b.grad_norm).epsilon(1e-5));
  }

  // Replicas that drift apart would train different models: the parameters must agree bit for bit.
  const Tensor& params = parallel.data_parallel().params();
  std::vector<float> rank0(static_cast<std::size_t>(params.numel()));
  std::memcpy(rank0.data(), params.raw(), params.nbytes());
  MPI_Bcast(rank0.data(), static_cast<int>(rank0.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
  CHECK(std::memcmp(rank0.data(), params.raw(), params.nbytes()) == 0);
}
