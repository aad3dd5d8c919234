// Run configuration in the INI-like subset of TOML that torchtitan's configs use ([section], key = value,
// quoted strings, numbers, booleans, flat lists, # comments), read into Boost.ProgramOptions as options named
// "section.key", with `--section.key=value` overrides from the command line taking precedence.
#pragma once

#include <boost/program_options.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace dsv3 {

// One `key = value` of a config file, its value already unquoted ("a, b" lists become several tokens).
struct ConfigEntry {
  std::string key;  // "section.key"
  std::vector<std::string> tokens;
  int line = 0;
};

// Parses the TOML subset; errors name the file and the line.
std::vector<ConfigEntry> parse_config_text(const std::string& text, const std::string& source_name);
std::vector<ConfigEntry> read_config_file(const std::filesystem::path& path);

// Stores `entries` into `values` as options of `options`; a key that `options` does not know is an error naming
// the file, line and key. Values already in `values` (e.g. from the command line) win.
void store_config_entries(const std::vector<ConfigEntry>& entries, const std::string& source_name,
                          const boost::program_options::options_description& options,
                          boost::program_options::variables_map& values);

}  // namespace dsv3
