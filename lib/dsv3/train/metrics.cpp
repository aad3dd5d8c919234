#include "dsv3/train/metrics.hpp"

#include "dsv3/core/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <sstream>

namespace dsv3::train {

namespace {

// A number as JSON: shortest round-trip text, or null for NaN and infinities.
std::string json_number(double value) { return std::isfinite(value) ? fmt::format("{}", value) : "null"; }

std::string json_string(const std::string& text) {
  std::string quoted = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      quoted += '\\';
      quoted += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      quoted += fmt::format("\\u{:04x}", static_cast<int>(c));
    } else {
      quoted += c;
    }
  }
  return quoted + '"';
}

// A "VmRSS:   123456 kB" line of /proc/self/status, in GiB.
double status_kib_field(const std::string& status, const std::string& field) {
  const auto at = status.find(field + ":");
  if (at == std::string::npos) return 0.0;
  std::istringstream line(status.substr(at + field.size() + 1));
  double kib = 0.0;
  line >> kib;
  return kib / (1024.0 * 1024.0);
}

}  // namespace

MemoryUsage memory_usage(Device device) {
  if (device == Device::cuda) {
    static double peak_gib = 0.0;
    const double used_gib = static_cast<double>(cuda_memory().used_bytes) / static_cast<double>(1ull << 30);
    peak_gib = std::max(peak_gib, used_gib);
    return {used_gib, peak_gib};
  }
  std::ifstream file("/proc/self/status");
  if (!file) return {};
  std::stringstream status;
  status << file.rdbuf();
  return {status_kib_field(status.str(), "VmRSS"), status_kib_field(status.str(), "VmHWM")};
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto total = static_cast<std::int64_t>(std::llround(seconds));
  if (total < 60) return fmt::format("{}s", total);
  if (total < 3600) return fmt::format("{}m{:02}s", total / 60, total % 60);
  return fmt::format("{}h{:02}m", total / 3600, total % 3600 / 60);
}

std::string format_step(const StepMetrics& m) {
  const int width = static_cast<int>(fmt::format("{}", m.steps).size());
  std::string line = fmt::format("step {:>{}}/{}  loss {:7.4f}", m.step, width, m.steps, m.loss);
  if (m.balance_loss != 0.0) line += fmt::format("  balance {:.3e}", m.balance_loss);
  line += fmt::format(
      "  grad_norm {:7.4f}  lr {:.2e}  mem {:.2f} GiB (state {:.3f})  tok/s {:8.1f}  TFLOP/s {:.4f}  MFU {:5.2f}%  "
      "eta {}",
      m.grad_norm, m.lr, m.memory_gib, m.state_memory_gib, m.tokens_per_second, m.tflops, 100.0 * m.mfu,
      format_duration(m.eta_seconds));
  return line;
}

std::string format_validation(const ValidationMetrics& m) {
  return fmt::format("validation at step {}: loss {:.4f} (perplexity {:.2f}) over {} targets in {}", m.step, m.loss,
                     std::exp(m.loss), m.targets, format_duration(m.seconds));
}

std::string to_json_line(const RunMetrics& m) {
  return fmt::format(
      R"({{"kind": "run", "description": {}, "flavor": {}, "parameters": {}, "active_parameters": {}, "ranks": {}, )"
      R"("tokens_per_step": {}, "steps": {}, "flops_per_token": {}, "causal_flops": {}, "peak_tflops": {}, )"
      R"("unigram_entropy": {}}})",
      json_string(m.description), json_string(m.flavor), m.parameters, m.active_parameters, m.ranks, m.tokens_per_step,
      m.steps, json_number(m.flops_per_token), m.causal_flops ? "true" : "false", json_number(m.peak_tflops),
      json_number(m.unigram_entropy));
}

std::string to_json_line(const StepMetrics& m) {
  return fmt::format(R"({{"kind": "train", "step": {}, "loss": {}, "balance_loss": {}, "grad_norm": {}, "lr": {}, )"
                     R"("step_seconds": {}, "tokens_per_second": {}, "tflops": {}, "mfu": {}, "memory_gib": {}, )"
                     R"("peak_memory_gib": {}, "state_memory_gib": {}, "eta_seconds": {}}})",
                     m.step, json_number(m.loss), json_number(m.balance_loss), json_number(m.grad_norm),
                     json_number(m.lr), json_number(m.step_seconds), json_number(m.tokens_per_second),
                     json_number(m.tflops), json_number(m.mfu), json_number(m.memory_gib),
                     json_number(m.peak_memory_gib), json_number(m.state_memory_gib), json_number(m.eta_seconds));
}

std::string to_json_line(const ValidationMetrics& m) {
  return fmt::format(R"({{"kind": "validation", "step": {}, "loss": {}, "targets": {}, "seconds": {}}})", m.step,
                     json_number(m.loss), m.targets, json_number(m.seconds));
}

MetricsFile::MetricsFile(const std::filesystem::path& path) : path_(path) {
  std::filesystem::create_directories(path.parent_path());
  file_.open(path, std::ios::app);
  DSV3_CHECK(file_.good(), "cannot open the metrics file {} for writing", path.string());
}

void MetricsFile::write(const std::string& json_line) {
  file_ << json_line << '\n';
  file_.flush();
  DSV3_CHECK(file_.good(), "cannot write the metrics file {}", path_.string());
}

}  // namespace dsv3::train
