// dsv3_train: trains DeepSeek-V3 as a torchtitan-style TOML config and `--section.key=value` overrides say.
//   mpiexec -n 2 dsv3_train --job.config_file inputs/debug_model.toml [--training.steps=20 ...]
//   dsv3_train --help
#include "dsv3/bench/peak.hpp"
#include "dsv3/train/cpu_threads.hpp"
#include "dsv3/train/job_errors.hpp"
#include "dsv3/train/job_config.hpp"
#include "dsv3/train/stop_signal.hpp"
#include "dsv3/train/trainer.hpp"

#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

using namespace dsv3;

namespace {

// One device's peak for MFU: from the config; on a GPU its bf16 dense peak; on the CPU measured on every rank at
// once, so that each rank sees the cores shared as they are during training.
train::DevicePeak device_peak(const train::JobConfig& config, int threads, MPI_Comm comm) {
  if (config.metrics.peak_tflops > 0) return {config.metrics.peak_tflops, "metrics.peak_tflops"};
  if (train::training_device(config) == Device::cuda) {
    const bench::GpuPeak peak = bench::gpu_bf16_peak();
    return {peak.tflops, peak.source};
  }
  double gflops = bench::measure_fp32_peak().gflops;
  int ranks = 1;
  MPI_Comm_size(comm, &ranks);
  MPI_Allreduce(MPI_IN_PLACE, &gflops, 1, MPI_DOUBLE, MPI_SUM, comm);
  return {gflops / ranks / 1e3,
          fmt::format("measured: fp32 FMA loop on {} thread(s) per rank, mean of {} rank(s)", threads, ranks)};
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const MPI_Comm world = MPI_COMM_WORLD;
  int rank = 0;
  MPI_Comm_rank(world, &rank);
  const std::vector<std::string> arguments(argv + 1, argv + argc);
  if (std::any_of(arguments.begin(), arguments.end(),
                  [](const std::string& a) { return a == "--help" || a == "-h"; })) {
    if (rank == 0) {
      fmt::print("usage: mpiexec -n N dsv3_train --job.config_file FILE.toml [--section.key=value ...]\n\n{}",
                 train::job_config_help());
    }
    MPI_Finalize();
    return 0;
  }

  // Setup, in three rounds that each end with the ranks agreeing on success: first what every rank does alone
  // (reading the config), then what starts with collectives (thread placement, the config compared across ranks,
  // the process grid) before the data and the model, then the start from a checkpoint (collective reads). A
  // failure on any rank is printed once, by the lowest failing rank, and every rank exits with status 1.
  std::optional<train::JobConfig> config;
  std::optional<train::Trainer> trainer;
  int threads = 1;
  const bool ready = train::run_setup(world, "dsv3_train", [&] { config = train::parse_job_config(arguments); }) &&
                     train::run_setup(world, "dsv3_train", [&] {
                       threads = train::configure_cpu_threads(world);
                       trainer.emplace(*config, world);
                     }) &&
                     train::run_setup(world, "dsv3_train", [&] { trainer->resume(); });
  if (!ready) {
    trainer.reset();
    MPI_Finalize();
    return 1;
  }

  // Training: a rank that fails may leave the others inside a collective, so it aborts the whole job. A stop
  // request from the batch system ends it early: with a checkpoint to resume from, the exit code asks for a requeue.
  train::install_stop_signal_handlers();
  train::run_or_abort(world, "dsv3_train", [&] { trainer->train(device_peak(*config, threads, world)); });
  int status = 0;
  if (trainer->stop_signal() != 0) status = config->checkpoint.enable ? train::kRequeueExitCode : 1;
  // Parallel HDF5 shuts itself down inside MPI_Finalize: the trainer's open datasets must be closed before.
  trainer.reset();
  MPI_Finalize();
  return status;
}
