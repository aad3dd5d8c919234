#include "dsv3/core/config_file.hpp"

#include "dsv3/core/error.hpp"

#include <fstream>
#include <sstream>
#include <string_view>

namespace dsv3 {

namespace po = boost::program_options;

namespace {

std::string trim(const std::string& text) {
  const auto begin = text.find_first_not_of(" \t\r");
  if (begin == std::string::npos) return "";
  const auto end = text.find_last_not_of(" \t\r");
  return text.substr(begin, end - begin + 1);
}

// Reads one scalar starting at `pos` (a quoted string, or a bare word — number or boolean — up to
// whitespace, ',', ']' or '#');
// advances `pos` past it.
std::string read_scalar(const std::string& line, std::size_t& pos, const std::string& where) {
  while (pos < line.size() && (line[pos] == ' ' || line[pos] == '\t')) ++pos;
  DSV3_CHECK(pos < line.size(), "{}: missing value", where);
  const char quote = line[pos];
  if (quote == '"' || quote == '\'') {
    std::string value;
    for (++pos; pos < line.size(); ++pos) {
      const char c = line[pos];
      if (c == quote) {
        ++pos;
        return value;
      }
      if (c == '\\' && quote == '"' && pos + 1 < line.size()) {  // basic strings: the common escapes
        const char escaped = line[++pos];
        switch (escaped) {
          case 'n': value += '\n'; break;
          case 't': value += '\t'; break;
          case '\\': value += '\\'; break;
          case '"': value += '"'; break;
          default: fail("{}: unsupported escape \\{} in a string", where, escaped);
        }
        continue;
      }
      value += c;
    }
    fail("{}: unterminated string", where);
  }
  const std::size_t begin = pos;
  while (pos < line.size() && std::string_view(" \t\r,]#").find(line[pos]) == std::string_view::npos) ++pos;
  const std::string value = line.substr(begin, pos - begin);
  DSV3_CHECK(!value.empty(), "{}: empty value", where);
  // Underscores in numbers (1_000) are TOML; ProgramOptions' lexical casts do not know them.
  if (value.find_first_not_of("0123456789_+-.eE") == std::string::npos) {
    std::string digits;
    for (const char c : value) {
      if (c != '_') digits += c;
    }
    return digits;
  }
  return value;
}

void expect_end(const std::string& line, std::size_t pos, const std::string& where) {
  while (pos < line.size() && (line[pos] == ' ' || line[pos] == '\t' || line[pos] == '\r')) ++pos;
  DSV3_CHECK(pos == line.size() || line[pos] == '#', "{}: unexpected text after the value: '{}'", where,
             line.substr(pos));
}

std::vector<std::string> read_value(const std::string& line, std::size_t pos, const std::string& where) {
  while (pos < line.size() && (line[pos] == ' ' || line[pos] == '\t')) ++pos;
  if (pos < line.size() && line[pos] == '[') {  // a flat list on one line
    std::vector<std::string> tokens;
    ++pos;
    while (true) {
      while (pos < line.size() && (line[pos] == ' ' || line[pos] == '\t')) ++pos;
      DSV3_CHECK(pos < line.size(), "{}: unterminated list (lists must fit on one line)", where);
      if (line[pos] == ']') break;
      tokens.push_back(read_scalar(line, pos, where));
      while (pos < line.size() && (line[pos] == ' ' || line[pos] == '\t')) ++pos;
      if (pos < line.size() && line[pos] == ',') ++pos;
    }
    expect_end(line, pos + 1, where);
    return tokens;
  }
  std::vector<std::string> tokens{read_scalar(line, pos, where)};
  expect_end(line, pos, where);
  return tokens;
}

}  // namespace

std::vector<ConfigEntry> parse_config_text(const std::string& text, const std::string& source_name) {
  std::vector<ConfigEntry> entries;
  std::istringstream stream(text);
  std::string raw;
  std::string section;
  int line_number = 0;
  while (std::getline(stream, raw)) {
    ++line_number;
    const std::string where = fmt::format("{}:{}", source_name, line_number);
    const std::string line = trim(raw);
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '[') {
      const auto close = line.find(']');
      DSV3_CHECK(close != std::string::npos && line[1] != '[', "{}: expected a [section] header, got '{}'", where,
                 line);
      section = trim(line.substr(1, close - 1));
      DSV3_CHECK(!section.empty(), "{}: empty section name", where);
      expect_end(line, close + 1, where);
      continue;
    }
    const auto equals = line.find('=');
    DSV3_CHECK(equals != std::string::npos, "{}: expected 'key = value', got '{}'", where, line);
    const std::string key = trim(line.substr(0, equals));
    DSV3_CHECK(!key.empty() && key.find_first_of(" \t\"'") == std::string::npos, "{}: invalid key '{}'", where, key);
    DSV3_CHECK(!section.empty(), "{}: key '{}' is outside any [section]", where, key);
    entries.push_back({section + "." + key, read_value(line, equals + 1, where), line_number});
  }
  return entries;
}

std::vector<ConfigEntry> read_config_file(const std::filesystem::path& path) {
  std::ifstream file(path);
  DSV3_CHECK(file.good(), "cannot open config file {}", path.string());
  std::stringstream text;
  text << file.rdbuf();
  return parse_config_text(text.str(), path.string());
}

void store_config_entries(const std::vector<ConfigEntry>& entries, const std::string& source_name,
                          const po::options_description& options, po::variables_map& values) {
  po::parsed_options parsed(&options);
  for (const ConfigEntry& entry : entries) {
    DSV3_CHECK(options.find_nothrow(entry.key, false) != nullptr, "{}:{}: unknown key '{}'", source_name, entry.line,
               entry.key);
    po::option option(entry.key, entry.tokens);
    option.original_tokens = {entry.key};
    parsed.options.push_back(std::move(option));
  }
  try {
    po::store(parsed, values);
  } catch (const po::error& error) {
    fail("{}: {}", source_name, error.what());
  }
}

}  // namespace dsv3
