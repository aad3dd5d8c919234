#include "dsv3/core/config_file.hpp"

#include "dsv3/core/error.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace dsv3;
namespace po = boost::program_options;

namespace {

struct Options {
  std::int64_t steps = 0;
  double lr = 0.0;
  bool enable = false;
  std::string flavor;
  std::vector<std::string> modules;
  po::options_description description{"test"};

  Options() {
    description.add_options()("training.steps", po::value(&steps)->default_value(10))(
        "optimizer.lr", po::value(&lr)->default_value(1e-3))("checkpoint.enable", po::value(&enable)->default_value(false))(
        "model.flavor", po::value(&flavor)->default_value("debugmodel"))(
        "activation_checkpoint.modules", po::value(&modules)->multitoken());
  }
};

}  // namespace

TEST_CASE("config text: sections, quoted strings, numbers, booleans, lists, comments") {
  const std::string text = R"(# a torchtitan-style config
[model]
flavor = "debugmodel_flex_attn"   # trailing comment
[training]
steps = 1_000
[optimizer]
lr = 8e-4
[checkpoint]
enable = true
[activation_checkpoint]
modules = ["attention", 'moe']
)";
  Options options;
  po::variables_map values;
  store_config_entries(parse_config_text(text, "test.toml"), "test.toml", options.description, values);
  po::notify(values);
  CHECK(options.flavor == "debugmodel_flex_attn");
  CHECK(options.steps == 1000);
  CHECK(options.lr == doctest::Approx(8e-4));
  CHECK(options.enable);
  CHECK(options.modules == std::vector<std::string>{"attention", "moe"});
}

TEST_CASE("config: command-line overrides win over the file") {
  Options options;
  po::variables_map values;
  const char* argv[] = {"prog", "--training.steps=20"};
  po::store(po::parse_command_line(2, argv, options.description), values);
  store_config_entries(parse_config_text("[training]\nsteps = 5\n[optimizer]\nlr = 0.5\n", "f.toml"), "f.toml",
                       options.description, values);
  po::notify(values);
  CHECK(options.steps == 20);
  CHECK(options.lr == 0.5);
}

TEST_CASE("config errors name the file, the line and the key") {
  Options options;
  po::variables_map values;
  CHECK_THROWS_WITH_AS(
      store_config_entries(parse_config_text("[training]\nstepz = 5\n", "f.toml"), "f.toml", options.description, values),
      doctest::Contains("f.toml:2: unknown key 'training.stepz'"), Error);
  CHECK_THROWS_WITH_AS(parse_config_text("steps = 5\n", "f.toml"), doctest::Contains("f.toml:1: key 'steps' is outside"),
                       Error);
  CHECK_THROWS_WITH_AS(parse_config_text("[a]\nb = \"open\n", "f.toml"), doctest::Contains("f.toml:2: unterminated string"),
                       Error);
  CHECK_THROWS_WITH_AS(parse_config_text("[a]\nb = [1, 2\n", "f.toml"), doctest::Contains("unterminated list"), Error);
  CHECK_THROWS_WITH_AS(parse_config_text("[a]\nb = 1 2\n", "f.toml"), doctest::Contains("unexpected text"), Error);
  po::variables_map bad_values;
  CHECK_THROWS_WITH_AS(store_config_entries(parse_config_text("[training]\nsteps = ten\n", "f.toml"), "f.toml",
                                            options.description, bad_values),
                       doctest::Contains("training.steps"), Error);
  CHECK_THROWS_WITH_AS(read_config_file("/nonexistent/x.toml"), doctest::Contains("cannot open config file /nonexistent/x.toml"),
                       Error);
}
