#include "dsv3/bench/checkpoint_benchmark.hpp"

#include "dsv3/core/error.hpp"
#include "dsv3/core/timer.hpp"
#include "dsv3/train/trainer.hpp"

#include <fcntl.h>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace dsv3::bench {

namespace {

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Drops the file's pages from the page cache (they are clean after the sync), so that reading it goes to the disk.
void evict_from_page_cache(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  DSV3_CHECK(fd >= 0, "{}: cannot open: {}", path.string(), std::strerror(errno));
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

// dd if=/dev/zero of=path bs=1M count=mebibytes conv=fsync, timed.
double raw_sequential_write(const std::filesystem::path& path, std::int64_t mebibytes) {
  const std::vector<char> block(1 << 20, 0);
  Timer timer;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  DSV3_CHECK(fd >= 0, "{}: cannot create: {}", path.string(), std::strerror(errno));
  for (std::int64_t i = 0; i < mebibytes; ++i) {
    DSV3_CHECK(::write(fd, block.data(), block.size()) == static_cast<ssize_t>(block.size()), "{}: write failed: {}",
               path.string(), std::strerror(errno));
  }
  DSV3_CHECK(::fsync(fd) == 0, "{}: fsync failed: {}", path.string(), std::strerror(errno));
  ::close(fd);
  const double seconds = timer.seconds();
  std::filesystem::remove(path);
  return seconds;
}

}  // namespace

CheckpointBenchmarkResult benchmark_checkpoint(const train::JobConfig& config, const std::filesystem::path& folder,
                                               int repeats) {
  DSV3_CHECK(repeats > 0, "checkpoint benchmark: {} repeats", repeats);
  train::JobConfig c = config;
  c.checkpoint.enable = false;  // the trainer starts from fresh weights; checkpoints are written explicitly below
  c.checkpoint.folder = std::filesystem::absolute(folder).string();
  c.checkpoint.keep_latest_k = 1;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  train::Trainer trainer(c, MPI_COMM_WORLD);

  CheckpointBenchmarkResult result;
  std::vector<double> writes, reads, raw;
  for (int i = 0; i < repeats; ++i) {
    MPI_Barrier(MPI_COMM_WORLD);
    Timer timer;
    const std::filesystem::path path = trainer.save_checkpoint();
    writes.push_back(timer.seconds());
    result.checkpoint_bytes = static_cast<std::int64_t>(std::filesystem::file_size(path));
    if (rank == 0) evict_from_page_cache(path);
    MPI_Barrier(MPI_COMM_WORLD);
    timer = Timer();
    trainer.load_checkpoint(path);
    MPI_Barrier(MPI_COMM_WORLD);
    reads.push_back(timer.seconds());
  }
  result.raw_bytes = (result.checkpoint_bytes + (1 << 20) - 1) / (1 << 20) * (1 << 20);
  if (rank == 0) {
    for (int i = 0; i < repeats; ++i) raw.push_back(raw_sequential_write(folder / "dd.bin", result.raw_bytes >> 20));
    result.raw_seconds = median(raw);
  }
  MPI_Bcast(&result.raw_seconds, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  result.write_seconds = median(writes);
  result.read_seconds = median(reads);
  return result;
}

}  // namespace dsv3::bench
