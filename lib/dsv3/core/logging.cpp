#include "dsv3/core/logging.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace dsv3 {

namespace {
LogLevel threshold_from_environment() {
  const char* value = std::getenv("DSV3_LOG_LEVEL");
  const std::string level = value ? value : "info";
  if (level == "debug") return LogLevel::debug;
  if (level == "warn") return LogLevel::warn;
  if (level == "error") return LogLevel::error;
  return LogLevel::info;
}
}  // namespace

LogLevel log_threshold() {
  static const LogLevel threshold = threshold_from_environment();
  return threshold;
}

void log_line(LogLevel level, std::string_view message) {
  static constexpr const char* kTags[] = {"D", "I", "W", "E"};
  fmt::print(stderr, "[dsv3 {}] {}\n", kTags[static_cast<int>(level)], message);
  std::fflush(stderr);
}

}  // namespace dsv3
