// Checkpoint bandwidth: the model and optimizer state of a run config written as one parallel HDF5 checkpoint and
// read back (train/checkpoint.hpp), against the raw sequential write bandwidth of the same disk measured the way
// `dd if=/dev/zero of=FILE bs=1M count=N conv=fsync` does. Collective over MPI_COMM_WORLD: run under mpiexec with
// the layout of the config.
#pragma once

#include "dsv3/train/job_config.hpp"

#include <cstdint>
#include <filesystem>

namespace dsv3::bench {

struct CheckpointBenchmarkResult {
  std::int64_t checkpoint_bytes = 0;
  double write_seconds = 0.0;  // collective write, sync to disk, rename (median)
  double read_seconds = 0.0;   // verified read into the shards, the file first evicted from the page cache (median)
  std::int64_t raw_bytes = 0;  // the dd-like write: as many 1 MiB blocks of zeros as the checkpoint has MiB
  double raw_seconds = 0.0;    // including its fsync (median)

  double write_mb_per_second() const { return static_cast<double>(checkpoint_bytes) / write_seconds / 1e6; }
  double read_mb_per_second() const { return static_cast<double>(checkpoint_bytes) / read_seconds / 1e6; }
  double raw_mb_per_second() const { return static_cast<double>(raw_bytes) / raw_seconds / 1e6; }
};

// Checkpoints of `config`'s model (its data must exist: the trainer opens it) written to `folder`, `repeats` times.
CheckpointBenchmarkResult benchmark_checkpoint(const train::JobConfig& config, const std::filesystem::path& folder,
                                               int repeats);

}  // namespace dsv3::bench
