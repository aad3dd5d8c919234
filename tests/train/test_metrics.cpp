#include "dsv3/train/metrics.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <string>

using namespace dsv3::train;

TEST_CASE("metrics: durations read as people write them") {
  CHECK(format_duration(0.4) == "0s");
  CHECK(format_duration(45) == "45s");
  CHECK(format_duration(185) == "3m05s");
  CHECK(format_duration(7620) == "2h07m");
  CHECK(format_duration(std::nan("")) == "?");
}

TEST_CASE("metrics: the step line and its JSON carry the same numbers; NaN becomes null") {
  StepMetrics m;
  m.step = 12;
  m.steps = 200;
  m.loss = 6.25;
  m.grad_norm = 1.5;
  m.lr = 8e-4;
  m.tokens_per_second = 2345.5;
  m.tflops = 0.0123;
  m.mfu = 0.125;
  m.memory_gib = 0.5;
  m.eta_seconds = 185;
  const std::string line = format_step(m);
  CHECK(line.find("step  12/200") != std::string::npos);
  CHECK(line.find("loss  6.2500") != std::string::npos);
  CHECK(line.find("grad_norm  1.5000") != std::string::npos);
  CHECK(line.find("MFU 12.50%") != std::string::npos);
  CHECK(line.find("eta 3m05s") != std::string::npos);
  CHECK(line.find("balance") == std::string::npos);  // only when the balance loss is on
  const std::string json = to_json_line(m);
  CHECK(json.find(R"("kind": "train", "step": 12, "loss": 6.25,)") != std::string::npos);
  CHECK(json.find(R"("mfu": 0.125)") != std::string::npos);
  m.loss = std::nan("");
  CHECK(to_json_line(m).find(R"("loss": null)") != std::string::npos);

  RunMetrics run;
  run.description = "a \"quoted\"\nline";
  run.unigram_entropy = 5.5;
  const std::string run_json = to_json_line(run);
  CHECK(run_json.find(R"("description": "a \"quoted\"\u000aline")") != std::string::npos);
  CHECK(run_json.find(R"("unigram_entropy": 5.5)") != std::string::npos);

  const std::string validation = to_json_line(ValidationMetrics{.step = 10, .loss = 4.5, .targets = 100, .seconds = 1});
  CHECK(validation == R"({"kind": "validation", "step": 10, "loss": 4.5, "targets": 100, "seconds": 1})");
}

TEST_CASE("metrics: this process's resident memory is visible") {
  const MemoryUsage memory = memory_usage();
  CHECK(memory.resident_gib > 0.0);
  CHECK(memory.peak_resident_gib >= memory.resident_gib);
}
