// The oracle of data parallelism (DESIGN.md "Parallelism"): a shrunk debug model (one dense block, two MoE blocks
// of 8 routed experts, top 3, 2 shared) trained for 3 optimizer steps of 2 micro-batches each, in f64, gives on
// every data-parallel layout the losses, gradient norms, expert biases and final weights of the single-rank run
// with the same global batch; FSDP keeps 1/N of the model state per rank; a config that differs between ranks is
// an error on every rank. Run on 2 ranks (DDP 2, FSDP 2 with and without resharding) and on 4 ranks (FSDP 4,
// HSDP 2×2, DDP 4).
#include "dsv3/train/job_errors.hpp"
#include "dsv3/train/trainer.hpp"

#include "io/io_testing.hpp"
#include "support/testing.hpp"
#include "train/train_testing.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

using namespace dsv3;
using namespace dsv3::testing;
using train::Trainer;

namespace {

constexpr std::int64_t kSeqLen = 16;
constexpr std::int64_t kGlobalBatch = 8;
constexpr std::int64_t kMicroBatches = 2;
constexpr int kSteps = 3;

// debugmodel's structure at a size that trains in milliseconds.
model::ModelArgs shrunk_debug_model() {
  model::ModelArgs args = model::model_flavor("debugmodel");
  args.vocab_size = 256;
  args.dim = 64;
  args.inter_dim = 128;
  args.moe_inter_dim = 32;
  args.n_layers = 3;
  args.n_heads = 4;
  args.kv_lora_rank = 32;
  args.qk_nope_head_dim = 16;
  args.qk_rope_head_dim = 8;
  args.v_head_dim = 16;
  args.max_seq_len = kSeqLen;
  return args;
}

struct Layout {
  std::string name;
  int replicate;
  int shard;
  const char* reshard = "default";
};

train::JobConfig job(const std::filesystem::path& folder, std::int64_t local_batch, const Layout& layout) {
  return tiny_job(folder / "data.h5", folder,
                  {"--training.seq_len=" + std::to_string(kSeqLen), "--training.steps=" + std::to_string(kSteps),
                   "--training.local_batch_size=" + std::to_string(local_batch),
                   "--training.global_batch_size=" + std::to_string(kGlobalBatch),
                   "--parallelism.data_parallel_replicate_degree=" + std::to_string(layout.replicate),
                   "--parallelism.data_parallel_shard_degree=" + std::to_string(layout.shard),
                   "--parallelism.fsdp_reshard_after_forward=" + std::string(layout.reshard)});
}

// `values` of rank 0 on every rank.
std::vector<double> from_rank_0(std::vector<double> values) {
  auto count = static_cast<long long>(values.size());
  MPI_Bcast(&count, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
  values.resize(static_cast<std::size_t>(count));
  MPI_Bcast(values.data(), static_cast<int>(count), MPI_DOUBLE, 0, MPI_COMM_WORLD);
  return values;
}

std::vector<double> elements(const Tensor& tensor) {
  const double* data = tensor.data<double>();
  return {data, data + tensor.numel()};
}

bool close(double value, double reference) {
  return std::fabs(value - reference) <= 1e-5 * std::fabs(reference) + 1e-12;
}

void check_equivalence(const ScratchDirectory& scratch, const Layout& layout) {
  CAPTURE(layout.name);
  const int ranks = layout.replicate * layout.shard;
  REQUIRE(ranks == world_size());
  const model::ModelArgs args = shrunk_debug_model();
  // The reference runs on rank 0 alone: the whole global batch as 2 micro-batches.
  std::optional<Trainer> single;
  if (world_rank() == 0)
    single.emplace(job(scratch.path(), kGlobalBatch / kMicroBatches, {"single", 1, 1}), args, MPI_COMM_SELF,
                   DType::f64);
  Trainer parallel(job(scratch.path(), kGlobalBatch / kMicroBatches / ranks, layout), args, MPI_COMM_WORLD, DType::f64);
  CHECK(layout.name.starts_with(parallel.data_parallel().mode()));

  std::vector<double> first_and_last_loss;
  for (int step = 0; step < kSteps; ++step) {
    CAPTURE(step);
    const train::StepResult result = parallel.train_step();
    std::vector<double> reference;
    if (single) {
      const train::StepResult r = single->train_step();
      reference = {r.loss, r.grad_norm, static_cast<double>(r.valid_targets)};
    }
    reference = from_rank_0(reference);
    CHECK(close(result.loss, reference[0]));
    CHECK(close(result.grad_norm, reference[1]));
    CHECK(result.valid_targets == static_cast<std::int64_t>(reference[2]));
    first_and_last_loss.push_back(result.loss);
  }
  CHECK(first_and_last_loss.front() != first_and_last_loss.back());  // the steps train

  // Expert biases follow the token counts of the whole global batch.
  for (std::size_t layer = 0; layer < parallel.model().expert_biases().size(); ++layer) {
    const Tensor& bias = parallel.model().expert_biases()[layer];
    if (!bias.defined()) continue;
    std::vector<double> reference;
    if (single) {
      const Tensor& b = single->model().expert_biases()[layer];
      for (std::int64_t e = 0; e < b.numel(); ++e) reference.push_back(b.data<float>()[e]);
    }
    reference = from_rank_0(reference);
    for (std::int64_t e = 0; e < bias.numel(); ++e) CHECK(bias.data<float>()[e] == reference[e]);
  }

  // Every final weight, gathered from the shards, against the reference's.
  std::int64_t compared = 0;
  for (const model::ParameterSpec& spec : parallel.data_parallel().layout().specs()) {
    CAPTURE(spec.name);
    const std::vector<double> weights = elements(parallel.data_parallel().full_parameter(spec.name));
    const std::vector<double> reference =
        from_rank_0(single ? elements(single->data_parallel().full_parameter(spec.name)) : std::vector<double>{});
    REQUIRE(weights.size() == reference.size());
    std::int64_t differing = 0;
    for (std::size_t i = 0; i < weights.size(); ++i) differing += close(weights[i], reference[i]) ? 0 : 1;
    CHECK(differing == 0);
    compared += static_cast<std::int64_t>(weights.size());
  }
  CHECK(compared == model::count_parameters(args).total);

  // Persistent model state per rank: 1/shard of one rank's, up to the padding of the shards.
  std::vector<double> single_bytes;
  if (single) single_bytes = {static_cast<double>(single->model_state_bytes())};
  const double reference_bytes = from_rank_0(single_bytes)[0];
  const double bytes = static_cast<double>(parallel.model_state_bytes());
  CHECK(bytes * layout.shard >= reference_bytes);
  CHECK(bytes * layout.shard <= 1.03 * reference_bytes);
  if (world_rank() == 0) {
    const auto& sent = parallel.data_parallel().step_volume();
    MESSAGE(layout.name, ": model state per rank ", bytes / reference_bytes, " of one rank's; last step sent ",
            sent.total_bytes() / 1e6, " MB in ", sent.collectives, " collectives (textbook ",
            parallel.data_parallel().textbook_step_bytes(kMicroBatches) / 1e6, " MB)");
  }
}

}  // namespace

TEST_CASE("data parallel: every layout trains as one rank does with the same global batch (f64)") {
  ScratchDirectory scratch("data-parallel");
  write_documents(scratch / "data.h5", counting_documents(60));
  if (world_size() == 2) {
    check_equivalence(scratch, {"DDP 2", 2, 1});
    check_equivalence(scratch, {"FSDP 2", 1, 2});
    check_equivalence(scratch, {"FSDP 2, never resharded", 1, 2, "never"});
  } else {
    REQUIRE(world_size() == 4);
    check_equivalence(scratch, {"FSDP 4", 1, 4});
    check_equivalence(scratch, {"HSDP 2×2", 2, 2});
    check_equivalence(scratch, {"DDP 4", 4, 1});
  }
}

TEST_CASE("data parallel: a config that differs between ranks is an error on every rank, naming the key") {
  ScratchDirectory scratch("data-parallel-mismatch");
  write_documents(scratch / "data.h5", counting_documents(20));
  const std::string steps = world_rank() == 1 ? "--training.steps=9" : "--training.steps=8";
  const train::JobConfig config = tiny_job(scratch / "data.h5", scratch.path(), {steps});
  CHECK_THROWS_WITH_AS(train::require_same_config(config, MPI_COMM_WORLD),
                       "the job config differs between ranks: rank 1 has 'steps = 9' where rank 0 has 'steps = 8' "
                       "(in [training]); every rank must get the same config file and overrides",
                       Error);
  CHECK_THROWS_AS(Trainer(config, shrunk_debug_model(), MPI_COMM_WORLD), Error);
  // Still in step: a collective after the failures completes on every rank.
  MPI_Barrier(MPI_COMM_WORLD);
}
