// What a run reports (DESIGN.md "Observability"): one line per logged step on rank 0 and the same numbers as
// JSON lines in the run folder, for validation/plot_loss.py.
#pragma once

#include "dsv3/tensor/device_memory.hpp"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace dsv3::train {

// What a run is, written once at its start.
struct RunMetrics {
  std::string description;
  std::string flavor;
  std::int64_t parameters = 0;
  std::int64_t active_parameters = 0;
  int ranks = 1;
  std::int64_t tokens_per_step = 0;  // global batch × seq_len
  std::int64_t steps = 0;
  double flops_per_token = 0.0;  // training FLOPs (forward + backward), REFERENCE.md §3
  bool causal_flops = true;      // attention FLOPs counted causal (halved)
  double peak_tflops = 0.0;      // of one device
  double unigram_entropy = 0.0;  // nats per token of the training data; NaN when not computed
};

// Averages over the steps since the previous logged step, except loss, grad norm and lr, which are the step's.
struct StepMetrics {
  std::int64_t step = 0;      // 1-based optimizer step
  std::int64_t steps = 0;     // of the run
  double loss = 0.0;          // cross-entropy per valid target, whole global batch
  double balance_loss = 0.0;  // the sequence-wise balance loss added to it (0 when off)
  double grad_norm = 0.0;     // global L2 norm before clipping
  double lr = 0.0;
  double step_seconds = 0.0;
  double tokens_per_second = 0.0;  // per device (rank)
  double tflops = 0.0;             // per device
  double mfu = 0.0;                // tflops / the device's peak, as a fraction
  double memory_gib = 0.0;         // resident memory of rank 0 now
  double peak_memory_gib = 0.0;    // its high-water mark
  double state_memory_gib = 0.0;   // rank 0's parameter, gradient and optimizer shards (1/N of them under FSDP)
  double eta_seconds = 0.0;
};

struct ValidationMetrics {
  std::int64_t step = 0;
  double loss = 0.0;  // cross-entropy per valid target over the validation batches
  std::int64_t targets = 0;
  double seconds = 0.0;
};

// Resident set size and its peak, from /proc/self/status (0 where the system has no such file).
struct MemoryUsage {
  double resident_gib = 0.0;
  double peak_resident_gib = 0.0;
};
// The process's resident memory on the CPU; on a GPU the memory in use on it and the most seen by earlier calls.
MemoryUsage memory_usage(Device device = Device::cpu);

// "45s", "3m05s", "2h07m".
std::string format_duration(double seconds);
// The console line: "step  12/200  loss 6.1234  grad_norm 1.23  lr 8.0e-04  mem 0.41 GiB (state 0.12)  tok/s 2345  …".
std::string format_step(const StepMetrics& metrics);
std::string format_validation(const ValidationMetrics& metrics);
// One JSON object per line; non-finite numbers become null (JSON has no NaN).
std::string to_json_line(const RunMetrics& metrics);
std::string to_json_line(const StepMetrics& metrics);
std::string to_json_line(const ValidationMetrics& metrics);

// Appends JSON lines to <run folder>/metrics.jsonl, flushed after each line so a crashed run keeps its metrics.
class MetricsFile {
 public:
  explicit MetricsFile(const std::filesystem::path& path);
  void write(const std::string& json_line);
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::ofstream file_;
};

}  // namespace dsv3::train
