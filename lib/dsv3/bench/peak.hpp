// The machine's measured fp32 peak: an FMA loop on every core, the yardstick for every CPU op's FLOP/s.
#pragma once

#include <string>

namespace dsv3::bench {

struct PeakMeasurement {
  double gflops;  // fp32 GFLOP/s, all threads together (one FMA = 2 FLOPs)
  int threads;
};

// Runs independent FMA chains on registers in every OpenMP thread for about `seconds`.
PeakMeasurement measure_fp32_peak(double seconds = 0.5);

// The current GPU's bf16 dense tensor-core peak in TFLOP/s, for MFU: the data-sheet figure for the GPUs it knows
// (H100/H200/H800 SXM 989, A100 312), else measured as the best rate of an 8192³ bf16 matmul. `source` says which.
struct GpuPeak {
  double tflops;
  std::string source;
};
GpuPeak gpu_bf16_peak();

}  // namespace dsv3::bench
