// Resharding (DESIGN.md "Checkpoints"): a checkpoint written on FSDP 4 loads on 1 rank and on DDP 2, because its
// tensors have their logical shapes. The weights, moments' effect and expert biases arrive bit for bit, and the
// continued training gives the losses of the uninterrupted FSDP 4 run within 1e-5 (the layouts round differently).
#include "dsv3/train/trainer.hpp"

#include "io/io_testing.hpp"
#include "train/train_testing.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

using namespace dsv3;
using namespace dsv3::testing;
using train::Trainer;

namespace {

constexpr int kSteps = 6;
constexpr int kGlobalBatch = 8;

train::JobConfig job(const ScratchDirectory& scratch, int replicas, int shards) {
  return tiny_job(scratch / "data.h5", scratch.path(),
                  {"--training.steps=" + std::to_string(kSteps),
                   "--training.local_batch_size=" + std::to_string(kGlobalBatch / (replicas * shards)),
                   "--training.global_batch_size=" + std::to_string(kGlobalBatch),
                   "--parallelism.data_parallel_replicate_degree=" + std::to_string(replicas),
                   "--parallelism.data_parallel_shard_degree=" + std::to_string(shards), "--checkpoint.enable",
                   "--checkpoint.folder=fsdp4", "--checkpoint.interval=100",
                   "--checkpoint.last_save_model_only=false"});
}

// Resumes on `comm` with the given degrees and checks the weights and the continued losses.
void check_resumed(const ScratchDirectory& scratch, MPI_Comm comm, int replicas, int shards,
                   const std::vector<float>& saved_weights, const std::vector<double>& losses) {
  Trainer resumed(job(scratch, replicas, shards), tiny_model(16), comm);
  CAPTURE(resumed.data_parallel().mode());
  CHECK(resumed.resume() == "resumed from " + (scratch / "fsdp4" / "step-3.h5").string() + " at step 3");
  CHECK(resumed.steps_taken() == kSteps / 2);
  CHECK(full_weights(resumed) == saved_weights);
  for (int step = kSteps / 2; step < kSteps; ++step) {
    CAPTURE(step);
    const double loss = resumed.train_step().loss;
    const double reference = losses[static_cast<std::size_t>(step)];
    CHECK(std::fabs(loss - reference) <= 1e-5 * std::fabs(reference));
  }
}

}  // namespace

TEST_CASE("checkpoint: written on FSDP 4, resumed on 1 rank and on DDP 2") {
  int ranks = 0, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  REQUIRE(ranks == 4);
  ScratchDirectory scratch("checkpoint-layouts");
  write_documents(scratch / "data.h5", counting_documents(60));

  std::vector<double> losses;
  std::vector<float> saved_weights;
  {
    Trainer fsdp(job(scratch, 1, 4), tiny_model(16), MPI_COMM_WORLD);
    REQUIRE(fsdp.data_parallel().mode() == "FSDP");
    for (int step = 0; step < kSteps; ++step) {
      losses.push_back(fsdp.train_step().loss);
      if (step + 1 == kSteps / 2) {
        fsdp.save_checkpoint();
        saved_weights = full_weights(fsdp);
      }
    }
  }
  if (rank == 0) check_resumed(scratch, MPI_COMM_SELF, 1, 1, saved_weights, losses);
  MPI_Comm pair = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, rank < 2 ? 0 : MPI_UNDEFINED, rank, &pair);
  if (pair != MPI_COMM_NULL) {
    check_resumed(scratch, pair, 2, 1, saved_weights, losses);
    MPI_Comm_free(&pair);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}
