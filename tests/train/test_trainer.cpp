#include "dsv3/train/trainer.hpp"

#include "dsv3/ops/optim.hpp"
#include "io/io_testing.hpp"
#include "train/train_testing.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <span>
#include <string>
#include <vector>

using namespace dsv3;
using namespace dsv3::testing;
using train::Trainer;

namespace {

std::vector<train::StepResult> run_steps(Trainer& trainer, int steps) {
  std::vector<train::StepResult> results;
  for (int i = 0; i < steps; ++i) results.push_back(trainer.train_step());
  return results;
}

double grad_norm(Trainer& trainer) {
  const Tensor& grads = trainer.data_parallel().grads();
  return ops::global_l2_norm(std::span(&grads, 1));
}

}  // namespace

TEST_CASE("trainer: the same seed gives bitwise the same losses; another seed other losses") {
  ScratchDirectory scratch("trainer-determinism");
  write_documents(scratch / "data.h5", counting_documents(60));
  const auto config = tiny_job(scratch / "data.h5", scratch.path());
  Trainer first(config, tiny_model(16), MPI_COMM_SELF);
  Trainer second(config, tiny_model(16), MPI_COMM_SELF);
  const auto a = run_steps(first, 4);
  const auto b = run_steps(second, 4);
  for (std::size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    CHECK(a[i].step == static_cast<std::int64_t>(i) + 1);
    CHECK(a[i].loss == b[i].loss);
    CHECK(a[i].grad_norm == b[i].grad_norm);
  }
  Trainer reseeded(tiny_job(scratch / "data.h5", scratch.path(), {"--training.seed=8"}), tiny_model(16), MPI_COMM_SELF);
  CHECK(run_steps(reseeded, 1)[0].loss != a[0].loss);
}

TEST_CASE("trainer: the loss falls far below the unigram entropy on data that can be learned") {
  ScratchDirectory scratch("trainer-learns");
  write_documents(scratch / "data.h5", counting_documents(60));
  const double entropy = train::unigram_entropy(scratch / "data.h5", 1 << 20);
  Trainer trainer(tiny_job(scratch / "data.h5", scratch.path(), {"--training.steps=60", "--optimizer.lr=1e-2"}),
                  tiny_model(16), MPI_COMM_SELF);
  const auto results = run_steps(trainer, 60);
  CHECK(results.front().loss > 0.9 * std::log(static_cast<double>(kTinyVocab)));  // starts near uniform guessing
  CHECK(results.back().loss < 0.5 * entropy);
  MESSAGE("loss ", results.front().loss, " -> ", results.back().loss, ", unigram entropy ", entropy);
}

TEST_CASE("trainer: 2 micro-batches of 2 sequences make the same steps as 1 micro-batch of 4 (f64)") {
  ScratchDirectory scratch("trainer-accumulation");
  write_documents(scratch / "data.h5", counting_documents(60));
  Trainer accumulated(tiny_job(scratch / "data.h5", scratch.path(), {"--training.global_batch_size=4"}), tiny_model(16),
                      MPI_COMM_SELF, DType::f64);
  Trainer whole(tiny_job(scratch / "data.h5", scratch.path(), {"--training.local_batch_size=4"}), tiny_model(16),
                MPI_COMM_SELF, DType::f64);
  const auto a = run_steps(accumulated, 3);
  const auto b = run_steps(whole, 3);
  for (std::size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    CHECK(a[i].valid_targets == 4 * 16);
    CHECK(a[i].valid_targets == b[i].valid_targets);
    CHECK(a[i].loss == doctest::Approx(b[i].loss).epsilon(1e-12));
    CHECK(a[i].grad_norm == doctest::Approx(b[i].grad_norm).epsilon(1e-12));
  }
  CHECK(a[0].loss != a[2].loss);  // the steps train: equal losses would compare nothing
}

TEST_CASE("trainer: gradients are clipped to training.max_norm, and left alone without it") {
  ScratchDirectory scratch("trainer-clipping");
  write_documents(scratch / "data.h5", counting_documents(60));
  Trainer clipped(tiny_job(scratch / "data.h5", scratch.path(), {"--training.max_norm=0.01"}), tiny_model(16),
                  MPI_COMM_SELF);
  const train::StepResult step = clipped.train_step();
  CHECK(step.grad_norm > 0.1);  // the norm reported is the one before clipping
  CHECK(grad_norm(clipped) == doctest::Approx(0.01).epsilon(1e-4));

  Trainer unclipped(tiny_job(scratch / "data.h5", scratch.path(), {"--training.max_norm=0"}), tiny_model(16),
                    MPI_COMM_SELF);
  const train::StepResult free_step = unclipped.train_step();
  CHECK(free_step.grad_norm == doctest::Approx(step.grad_norm).epsilon(1e-6));  // same first batch, same weights
  CHECK(grad_norm(unclipped) == doctest::Approx(free_step.grad_norm).epsilon(1e-6));
}

TEST_CASE("trainer: expert biases move toward balance after each step, and only with load_balance_coeff > 0") {
  ScratchDirectory scratch("trainer-balance");
  write_documents(scratch / "data.h5", counting_documents(60));
  const auto bias_magnitude = [](Trainer& trainer) {
    double sum = 0.0;
    for (const Tensor& bias : trainer.model().expert_biases()) {
      if (bias.defined()) sum += ops::sum_of_squares(bias);
    }
    return sum;
  };
  Trainer balanced(tiny_job(scratch / "data.h5", scratch.path()), tiny_model(16), MPI_COMM_SELF);
  balanced.train_step();
  CHECK(bias_magnitude(balanced) > 0.0);
  Trainer unbalanced(tiny_job(scratch / "data.h5", scratch.path(), {"--moe.load_balance_coeff=0"}), tiny_model(16),
                     MPI_COMM_SELF);
  unbalanced.train_step();
  CHECK(bias_magnitude(unbalanced) == 0.0);
}

TEST_CASE("trainer: validation is a held-out loss over the same batches every time") {
  ScratchDirectory scratch("trainer-validation");
  write_documents(scratch / "data.h5", counting_documents(60));
  Trainer trainer(tiny_job(scratch / "data.h5", scratch.path(),
                           {"--validation.enable", "--validation.holdout_fraction=0.2", "--validation.steps=3"}),
                  tiny_model(16), MPI_COMM_SELF);
  const train::ValidationResult before = trainer.validate();
  CHECK(before.targets == 3 * 2 * 16);
  CHECK(trainer.validate().loss == before.loss);
  run_steps(trainer, 8);
  CHECK(trainer.validate().loss < before.loss);
}

TEST_CASE("trainer: train() logs every metrics.log_freq steps and validation to metrics.jsonl") {
  ScratchDirectory scratch("trainer-run");
  write_documents(scratch / "data.h5", counting_documents(60));
  Trainer trainer(tiny_job(scratch / "data.h5", scratch.path(),
                           {"--training.steps=5", "--metrics.log_freq=2", "--validation.enable", "--validation.freq=4",
                            "--validation.steps=1"}),
                  tiny_model(16), MPI_COMM_SELF);
  const std::filesystem::path run_folder = trainer.train({.tflops = 1.0, .source = "test"});
  CHECK(trainer.steps_taken() == 5);
  CHECK(std::filesystem::exists(run_folder / "config.toml"));
  std::ifstream metrics(run_folder / "metrics.jsonl");
  std::vector<std::string> kinds;
  std::vector<std::string> lines;
  for (std::string line; std::getline(metrics, line);) lines.push_back(line);
  REQUIRE(lines.size() == 7);  // run, steps 1, 2, 4, validation at 4, step 5, validation at 5
  CHECK(lines[0].find(R"("kind": "run")") != std::string::npos);
  CHECK(lines[0].find(R"("unigram_entropy": null)") == std::string::npos);
  CHECK(lines[1].find(R"("kind": "train", "step": 1,)") != std::string::npos);
  CHECK(lines[2].find(R"("step": 2,)") != std::string::npos);
  CHECK(lines[3].find(R"("step": 4,)") != std::string::npos);
  CHECK(lines[4].find(R"("kind": "validation", "step": 4,)") != std::string::npos);
  CHECK(lines[5].find(R"("step": 5,)") != std::string::npos);
  CHECK(lines[6].find(R"("kind": "validation", "step": 5,)") != std::string::npos);
}

TEST_CASE("trainer: the document-causal model trains on the loader's document ids") {
  ScratchDirectory scratch("trainer-documents");
  write_documents(scratch / "data.h5", counting_documents(60));
  model::ModelArgs args = tiny_model(16);
  args.mask = model::MaskType::document_causal;
  Trainer trainer(tiny_job(scratch / "data.h5", scratch.path()), args, MPI_COMM_SELF);
  const auto results = run_steps(trainer, 2);
  CHECK(std::isfinite(results[1].loss));
}

TEST_CASE("trainer: a dataset whose tokenizer has more tokens than the model is refused, naming the key") {
  ScratchDirectory scratch("trainer-vocabulary");
  write_documents(scratch / "data.h5", counting_documents(60));
  model::ModelArgs args = tiny_model(16);
  args.vocab_size = 32;
  CHECK_THROWS_WITH_AS(Trainer(tiny_job(scratch / "data.h5", scratch.path()), args, MPI_COMM_SELF),
                       doctest::Contains("holds ids of a tokenizer with 64 tokens, more than the 32"), Error);
}

TEST_CASE("unigram entropy: ln 4 for four equally frequent tokens") {
  ScratchDirectory scratch("trainer-entropy");
  write_documents(scratch / "data.h5", std::vector<std::vector<std::int32_t>>(10, {2, 3}));  // BOS 2 3 EOS
  CHECK(train::unigram_entropy(scratch / "data.h5", 1 << 20) == doctest::Approx(std::log(4.0)));
  // Only the first 2 tokens (BOS, 2): ln 2.
  CHECK(train::unigram_entropy(scratch / "data.h5", 2) == doctest::Approx(std::log(2.0)));
}
