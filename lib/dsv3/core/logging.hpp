// Logging to stderr with a level threshold taken from DSV3_LOG_LEVEL (debug, info, warn, error).
#pragma once

#include <fmt/format.h>

#include <string_view>
#include <utility>

namespace dsv3 {

enum class LogLevel { debug, info, warn, error };

LogLevel log_threshold();
void log_line(LogLevel level, std::string_view message);

template <class... Args>
void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) {
  if (level >= log_threshold()) log_line(level, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace dsv3
