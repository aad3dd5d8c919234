// Errors: every failure in dsv3 is a dsv3::Error whose message says what was wrong and where.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace dsv3 {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace dsv3

// DSV3_CHECK(cond, "fmt", args...): throws dsv3::Error with the formatted message when cond is false.
#define DSV3_CHECK(cond, ...)            \
  do {                                   \
    if (!(cond)) [[unlikely]] {          \
      ::dsv3::fail(__VA_ARGS__);         \
    }                                    \
  } while (false)
