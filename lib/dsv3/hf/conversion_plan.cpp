#include "dsv3/hf/conversion_plan.hpp"

#include "dsv3/core/logging.hpp"

#include <algorithm>

namespace dsv3::hf {

std::vector<int> split_by_bytes(const std::vector<std::uint64_t>& bytes, int ranks) {
  std::uint64_t total = 0;
  for (const std::uint64_t b : bytes) total += b;
  std::vector<int> owner(bytes.size(), 0);
  std::uint64_t before = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const long double middle = static_cast<long double>(before) + static_cast<long double>(bytes[i]) / 2;
    if (total > 0)
      owner[i] = std::min(ranks - 1, static_cast<int>(middle * ranks / static_cast<long double>(total)));
    before += bytes[i];
  }
  return owner;
}

double gigabytes(std::uint64_t bytes) { return static_cast<double>(bytes) / 1e9; }

Progress::Progress(std::string what, std::uint64_t total_bytes, std::uint64_t my_bytes, bool enabled)
    : what_(std::move(what)), total_(total_bytes), mine_(my_bytes), enabled_(enabled) {}

double Progress::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::advance(std::uint64_t bytes) {
  done_ += bytes;
  const auto now = std::chrono::steady_clock::now();
  if (!enabled_ || mine_ == 0 || now - last_ < std::chrono::seconds(2)) return;
  last_ = now;
  const double fraction = static_cast<double>(done_) / static_cast<double>(mine_);
  const double elapsed = seconds();
  const double rate = gigabytes(total_) * fraction / elapsed;
  log(LogLevel::info, "{}: {:.2f}/{:.2f} GB ({:.0f}%), {:.2f} GB/s, ETA {:.0f} s", what_, gigabytes(total_) * fraction,
      gigabytes(total_), 100 * fraction, rate, elapsed * (1 - fraction) / fraction);
}

}  // namespace dsv3::hf
