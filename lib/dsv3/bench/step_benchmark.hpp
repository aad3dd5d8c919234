// One training step of a run config, timed by phase: forward, backward, and the optimizer (clipping + AdamW over
// the flat arena), on one rank (CPU or one GPU) with random tokens, so that it needs no dataset. The counterpart for PyTorch eager
// is validation/torch_step_bench.py.
#pragma once

#include "dsv3/train/job_config.hpp"

#include <cstdint>

namespace dsv3::bench {

struct StepBenchmarkOptions {
  int warmup_steps = 2;  // untimed: first-touch page faults, allocation of the activation record
  int steps = 5;         // timed; the median of each phase is reported
  Device device = Device::cpu;
  std::int64_t layers = 0;  // > 0: the flavor cut to this many layers (a single-GPU proxy of a large flavor)
};

struct StepBenchmarkResult {
  std::int64_t tokens = 0;  // per step: training.local_batch_size × training.seq_len
  double forward_seconds = 0.0;
  double backward_seconds = 0.0;
  double optimizer_seconds = 0.0;
  double flops_per_token = 0.0;  // REFERENCE.md §3, causal attention
  double loss = 0.0;             // of the last step, a sanity check (≈ ln vocab at start)

  double step_seconds() const { return forward_seconds + backward_seconds + optimizer_seconds; }
  double tokens_per_second() const { return static_cast<double>(tokens) / step_seconds(); }
  double gflops() const { return flops_per_token * tokens_per_second() / 1e9; }
};

// The model, batch and optimizer settings of `config` (validated for one rank).
StepBenchmarkResult benchmark_training_step(const train::JobConfig& config, const StepBenchmarkOptions& options);

}  // namespace dsv3::bench
