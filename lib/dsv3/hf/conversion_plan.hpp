// What import and export share: splitting a list of work items over the ranks, reporting progress, block counts.
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace dsv3::hf {

// For items of the given byte sizes, in order: the rank of each, runs of consecutive items of about equal total
// bytes (item i goes to the rank whose equal share of the bytes holds its middle byte).
std::vector<int> split_by_bytes(const std::vector<std::uint64_t>& bytes, int ranks);

// Rank 0's progress line every few seconds: the whole job's bytes estimated from rank 0's share.
class Progress {
 public:
  Progress(std::string what, std::uint64_t total_bytes, std::uint64_t my_bytes, bool enabled);
  void advance(std::uint64_t bytes);
  double seconds() const;

 private:
  std::string what_;
  std::uint64_t total_;
  std::uint64_t mine_;
  std::uint64_t done_ = 0;
  bool enabled_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_ = start_;
};

double gigabytes(std::uint64_t bytes);

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

}  // namespace dsv3::hf
