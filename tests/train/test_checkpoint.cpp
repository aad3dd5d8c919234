// Checkpoints (DESIGN.md "Checkpoints", "Testing"), on 2 ranks with the tiny model in f32:
//   - exact resume: 6 steps straight against 3 steps, a checkpoint, a new trainer that resumes, 3 steps: the same
//     losses and final weights bit for bit, on 1 rank and on FSDP 2; keep_latest_k prunes the older checkpoints;
//   - the model-only export in bfloat16 starts another run through checkpoint.initial_load_path;
//   - a truncated file, a flipped byte in a dataset, a missing dataset and a checkpoint of another model each give a
//     clear error naming the file and what is wrong, on every rank.
#include "dsv3/train/checkpoint_folder.hpp"
#include "dsv3/train/trainer.hpp"

#include "io/io_testing.hpp"
#include "support/testing.hpp"
#include "train/train_testing.hpp"

#include <doctest/doctest.h>
#include <hdf5.h>

#include <cstring>
#include <fstream>
#include <optional>
#include <vector>

using namespace dsv3;
using namespace dsv3::testing;
using train::Trainer;

namespace {

constexpr int kSteps = 6;

// The tiny model's job with a global batch of 4 sequences on `ranks` FSDP ranks, checkpoints in `folder`.
train::JobConfig job(const ScratchDirectory& scratch, int ranks, const std::string& folder,
                     std::vector<std::string> overrides = {}) {
  std::vector<std::string> arguments = {"--training.steps=" + std::to_string(kSteps),
                                        "--training.local_batch_size=" + std::to_string(4 / ranks),
                                        "--training.global_batch_size=4",
                                        "--checkpoint.enable",
                                        "--checkpoint.folder=" + folder,
                                        "--checkpoint.interval=100",
                                        "--checkpoint.last_save_model_only=false"};
  arguments.insert(arguments.end(), overrides.begin(), overrides.end());
  return tiny_job(scratch / "data.h5", scratch.path(), arguments);
}

void check_exact_resume(const ScratchDirectory& scratch, int ranks, MPI_Comm comm, const std::string& folder) {
  CAPTURE(ranks);
  Trainer straight(job(scratch, ranks, folder, {"--checkpoint.enable=false"}), tiny_model(16), comm);
  std::vector<double> losses;
  for (int step = 0; step < kSteps; ++step) losses.push_back(straight.train_step().loss);
  {
    Trainer first(job(scratch, ranks, folder, {"--checkpoint.keep_latest_k=2"}), tiny_model(16), comm);
    CHECK(first.resume().empty());  // no checkpoint yet
    for (int step = 0; step < kSteps / 2; ++step) {
      CHECK(first.train_step().loss == losses[static_cast<std::size_t>(step)]);
      first.save_checkpoint();  // steps 1, 2, 3: the first is pruned
    }
  }
  CHECK(train::checkpoint_steps(scratch / folder) == std::vector<std::int64_t>{2, 3});

  Trainer resumed(job(scratch, ranks, folder), tiny_model(16), comm);
  CHECK(resumed.steps_taken() == 0);  // until resume()
  CHECK(resumed.resume() == "resumed from " + (scratch / folder / "step-3.h5").string() + " at step 3");
  CHECK(resumed.steps_taken() == kSteps / 2);
  for (int step = kSteps / 2; step < kSteps; ++step) {
    CAPTURE(step);
    CHECK(resumed.train_step().loss == losses[static_cast<std::size_t>(step)]);  // bitwise
  }
  CHECK(full_weights(resumed) == full_weights(straight));
}

// Copies step-2.h5 of `from` into a fresh folder `to` as step-2.h5 and applies `corrupt` to the copy (rank 0).
std::filesystem::path corrupted_copy(const ScratchDirectory& scratch, const std::string& from, const std::string& to,
                                     const std::function<void(const std::filesystem::path&)>& corrupt) {
  const std::filesystem::path copy = scratch / to / "step-2.h5";
  if (world_rank() == 0) {
    std::filesystem::create_directories(scratch / to);
    std::filesystem::copy_file(scratch / from / "step-2.h5", copy);
    corrupt(copy);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return copy;
}

// Flips one byte in the middle of a dataset's elements (datasets are contiguous: H5Dget_offset is where they start).
void flip_byte_in(const std::filesystem::path& path, const std::string& dataset) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t data = H5Dopen2(file, dataset.c_str(), H5P_DEFAULT);
  const haddr_t offset = H5Dget_offset(data) + H5Dget_storage_size(data) / 2;
  H5Dclose(data);
  H5Fclose(file);
  std::fstream stream(path, std::ios::in | std::ios::out | std::ios::binary);
  stream.seekg(static_cast<std::streamoff>(offset));
  const char byte = static_cast<char>(stream.get() ^ 0x10);
  stream.seekp(static_cast<std::streamoff>(offset));
  stream.put(byte);
}

void remove_dataset(const std::filesystem::path& path, const std::string& dataset) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  H5Ldelete(file, dataset.c_str(), H5P_DEFAULT);
  H5Fclose(file);
}

}  // namespace

TEST_CASE("checkpoint: 3 steps, checkpoint, resume, 3 steps = 6 steps straight, bit for bit (1 rank, FSDP 2)") {
  ScratchDirectory scratch("checkpoint-resume");
  write_documents(scratch / "data.h5", counting_documents(60));
  if (world_rank() == 0) check_exact_resume(scratch, 1, MPI_COMM_SELF, "single");
  check_exact_resume(scratch, 2, MPI_COMM_WORLD, "fsdp2");
}

TEST_CASE("checkpoint: the last, model-only checkpoint in bfloat16 gives another run its initial weights") {
  ScratchDirectory scratch("checkpoint-export");
  write_documents(scratch / "data.h5", counting_documents(60));
  std::vector<float> trained;
  std::filesystem::path exported;
  {
    Trainer trainer(job(scratch, 2, "export",
                        {"--training.steps=2", "--checkpoint.last_save_model_only=true",
                         "--checkpoint.export_dtype=bfloat16", "--checkpoint.interval=5"}),
                    tiny_model(16), MPI_COMM_WORLD);
    trainer.train({1.0, "test"});
    trained = full_weights(trainer);
    exported = scratch / "export" / "step-2.h5";
  }
  // A model-only checkpoint cannot resume training: the next run with this folder starts afresh.
  Trainer again(job(scratch, 2, "export"), tiny_model(16), MPI_COMM_WORLD);
  CHECK(again.resume().empty());

  Trainer started(job(scratch, 2, "other", {"--checkpoint.initial_load_path=" + exported.string()}), tiny_model(16),
                  MPI_COMM_WORLD);
  CHECK(started.resume() == "initial weights from " + exported.string() + " (model only)");
  CHECK(started.steps_taken() == 0);
  // Initial weights need only the shapes to agree: another norm epsilon (as between the released DeepSeek-V3 and
  // flavor 671B) is reported, not refused.
  model::ModelArgs other_eps = tiny_model(16);
  other_eps.norm_eps = 1e-3;
  Trainer tuned(job(scratch, 2, "tuned", {"--checkpoint.initial_load_path=" + exported.string()}), other_eps,
                MPI_COMM_WORLD);
  const std::string note = tuned.resume();
  CHECK(note.starts_with("initial weights from " + exported.string() + " (model only; its model args differ from "
                         "this run's in norm_eps "));
  CHECK(note.ends_with(" → 0.001)"));
  // The parameters rounded to bfloat16; the expert biases (the last 4 values) stay float32.
  const std::vector<float> loaded = full_weights(started);
  REQUIRE(loaded.size() == trained.size());
  std::size_t differing = 0;
  for (std::size_t i = 0; i < loaded.size(); ++i) {
    const bool bias = i + 4 >= loaded.size();
    differing += loaded[i] == (bias ? trained[i] : bf16_to_f32(f32_to_bf16(trained[i]))) ? 0 : 1;
  }
  CHECK(differing == 0);
}

TEST_CASE("checkpoint: a truncated file, a flipped byte, a missing dataset, another model: a clear error") {
  ScratchDirectory scratch("checkpoint-corrupt");
  write_documents(scratch / "data.h5", counting_documents(60));
  {
    Trainer trainer(job(scratch, 2, "good"), tiny_model(16), MPI_COMM_WORLD);
    for (int step = 0; step < 2; ++step) trainer.train_step();
    trainer.save_checkpoint();
  }
  const auto load = [&](const std::string& folder) {
    Trainer(job(scratch, 2, folder), tiny_model(16), MPI_COMM_WORLD).resume();
  };

  const auto truncated = corrupted_copy(scratch, "good", "truncated", [](const std::filesystem::path& path) {
    std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  });
  CHECK_ERROR_CONTAINS(load("truncated"), truncated.string(), "truncated");

  const std::string experts = "/model/layers.1.moe.experts.w1";
  const auto flipped = corrupted_copy(scratch, "good", "flipped",
                                      [&](const std::filesystem::path& path) { flip_byte_in(path, experts); });
  CHECK_ERROR_CONTAINS(load("flipped"), flipped.string(), "dataset '" + experts + "'", "checksum",
                       "the file is corrupted");

  const std::string moment = "/optim/output/exp_avg_sq";
  const auto missing = corrupted_copy(scratch, "good", "missing",
                                      [&](const std::filesystem::path& path) { remove_dataset(path, moment); });
  CHECK_ERROR_CONTAINS(load("missing"), missing.string(), "dataset '" + moment + "' is missing");

  // The same training run on a model of another width.
  model::ModelArgs wider = tiny_model(16);
  wider.dim = 48;
  {
    Trainer other(job(scratch, 2, "wider"), wider, MPI_COMM_WORLD);
    other.train_step();
    other.save_checkpoint(true);
  }
  const std::string other_model = (scratch / "wider" / "step-1.h5").string();
  CHECK_ERROR_CONTAINS(Trainer(job(scratch, 2, "fresh", {"--checkpoint.initial_load_path=" + other_model}),
                               tiny_model(16), MPI_COMM_WORLD)
                           .resume(),
                       other_model,
                       "a checkpoint of another model: model_args dim = 48 in the file but 32 in this run");

  // Every rank saw the error and they are still in step.
  MPI_Barrier(MPI_COMM_WORLD);
}
