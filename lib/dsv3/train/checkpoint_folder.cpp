#include "dsv3/train/checkpoint_folder.hpp"

#include "dsv3/core/error.hpp"
#include "dsv3/io/collective.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <string>

namespace dsv3::train {

namespace {

constexpr std::string_view kPrefix = "step-";
constexpr std::string_view kSuffix = ".h5";
constexpr std::string_view kPartialSuffix = ".partial";

// The step of a complete checkpoint's file name, or -1.
std::int64_t step_of(const std::string& name) {
  if (!name.starts_with(kPrefix) || !name.ends_with(kSuffix)) return -1;
  const std::string_view digits(name.data() + kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size());
  std::int64_t step = -1;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), step);
  return error == std::errc() && end == digits.data() + digits.size() && !digits.empty() ? step : -1;
}

// fsync of a file or a folder: the rename must not reach the disk before the data, nor be lost after a crash.
void sync_to_disk(const std::filesystem::path& path, bool folder) {
  const int fd = ::open(path.c_str(), folder ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  DSV3_CHECK(fd >= 0, "{}: cannot open to sync it to disk: {}", path.string(), std::strerror(errno));
  const int status = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  DSV3_CHECK(status == 0, "{}: cannot sync to disk: {}", path.string(), std::strerror(error));
}

void prune(const std::filesystem::path& folder, std::int64_t keep_latest_k) {
  for (const auto& item : std::filesystem::directory_iterator(folder)) {
    if (item.path().filename().string().ends_with(kPartialSuffix)) std::filesystem::remove(item.path());
  }
  if (keep_latest_k <= 0) return;
  const std::vector<std::int64_t> steps = checkpoint_steps(folder);
  const auto excess = static_cast<std::int64_t>(steps.size()) - keep_latest_k;
  for (std::int64_t i = 0; i < excess; ++i) std::filesystem::remove(checkpoint_file(folder, steps[i]));
}

}  // namespace

std::filesystem::path checkpoint_file(const std::filesystem::path& folder, std::int64_t step) {
  return folder / fmt::format("{}{}{}", kPrefix, step, kSuffix);
}

std::vector<std::int64_t> checkpoint_steps(const std::filesystem::path& folder) {
  std::vector<std::int64_t> steps;
  std::error_code error;
  for (const auto& item : std::filesystem::directory_iterator(folder, error)) {
    const std::int64_t step = step_of(item.path().filename().string());
    if (step >= 0 && item.is_regular_file()) steps.push_back(step);
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

std::filesystem::path save_checkpoint_file(const std::filesystem::path& folder, std::int64_t step,
                                           std::int64_t keep_latest_k, MPI_Comm comm,
                                           const std::function<void(const std::filesystem::path&)>& write) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const std::filesystem::path final_path = checkpoint_file(folder, step);
  std::filesystem::path partial = final_path;
  partial += kPartialSuffix;
  io::agree_on_failure(comm, [&] {
    if (rank == 0) std::filesystem::create_directories(folder);
  });
  write(partial);  // has synced the data (MPI_File_sync on every rank) and closed the file
  MPI_Barrier(comm);  // every rank is done with it
  io::agree_on_failure(comm, [&] {
    if (rank != 0) return;
    sync_to_disk(partial, false);
    std::filesystem::rename(partial, final_path);
    sync_to_disk(folder, true);
    prune(folder, keep_latest_k);
  });
  return final_path;
}

}  // namespace dsv3::train
