// Shared by the tokenizer and BPE trainer tests: where the fixtures of validation/tokenizer_fixtures.py are,
// reading them, scratch directories, and the message of the error an action throws.
#pragma once

#include "dsv3/core/error.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace dsv3::testing::tokenizer {

inline const std::filesystem::path kFixtures = std::filesystem::path(DSV3_FIXTURES_DIR) / "tokenizer";

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  REQUIRE_MESSAGE(file.good(), "missing fixture ", path.string(), " (validation/tokenizer_fixtures.py makes it)");
  std::ostringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

inline nlohmann::json read_json(const std::filesystem::path& path) { return nlohmann::json::parse(read_text(path)); }

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream file(path, std::ios::binary);
  file << text;
}

// A fresh directory for one test of this process; the test removes it.
inline std::filesystem::path scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("dsv3_test_tokenizer_{}_{}", getpid(), name);
  std::filesystem::create_directories(dir);
  return dir;
}

template <class Action>
std::string error_of(Action&& action) {
  try {
    action();
  } catch (const dsv3::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace dsv3::testing::tokenizer
