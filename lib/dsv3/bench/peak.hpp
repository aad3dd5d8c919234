// The machine's measured fp32 peak: an FMA loop on every core, the yardstick for every CPU op's FLOP/s.
#pragma once

namespace dsv3::bench {

struct PeakMeasurement {
  double gflops;  // fp32 GFLOP/s, all threads together (one FMA = 2 FLOPs)
  int threads;
};

// Runs independent FMA chains on registers in every OpenMP thread for about `seconds`.
PeakMeasurement measure_fp32_peak(double seconds = 0.5);

}  // namespace dsv3::bench
