// Helpers of the io and data tests: a scratch directory shared by the ranks, and checks on error messages.
#pragma once

#include "dsv3/core/error.hpp"

#include <doctest/doctest.h>
#include <mpi.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <initializer_list>
#include <string>

namespace dsv3::testing {

// A fresh directory shared by all ranks of MPI_COMM_WORLD for one test, removed when the test ends.
class ScratchDirectory {
 public:
  explicit ScratchDirectory(const std::string& name) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int pid = static_cast<int>(getpid());
    MPI_Bcast(&pid, 1, MPI_INT, 0, MPI_COMM_WORLD);  // rank 0's: one name for all ranks
    path_ = std::filesystem::temp_directory_path() / ("dsv3-" + name + "-" + std::to_string(pid));
    if (rank == 0) {
      std::filesystem::remove_all(path_);
      std::filesystem::create_directories(path_);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
  ScratchDirectory(const ScratchDirectory&) = delete;
  ScratchDirectory& operator=(const ScratchDirectory&) = delete;
  ~ScratchDirectory() {
    MPI_Barrier(MPI_COMM_WORLD);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0) std::filesystem::remove_all(path_);
  }

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// The message of the dsv3::Error that `action` throws, or "" when it throws none.
inline std::string error_message(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

inline bool contains_all(const std::string& text, std::initializer_list<std::string> parts) {
  for (const std::string& part : parts) {
    if (text.find(part) == std::string::npos) return false;
  }
  return !text.empty();
}

}  // namespace dsv3::testing

// CHECK_ERROR_CONTAINS(expression, "part", ...): the expression throws dsv3::Error and its message contains
// every part.
#define CHECK_ERROR_CONTAINS(expression, ...)                                                   \
  do {                                                                                          \
    const std::string dsv3_error = ::dsv3::testing::error_message([&] { (void)(expression); }); \
    INFO("error message: \"", dsv3_error, "\"");                                                \
    CHECK(::dsv3::testing::contains_all(dsv3_error, {__VA_ARGS__}));                            \
  } while (false)
