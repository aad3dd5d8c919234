// Per-op throughput of the op library at the debug model's shapes and at a GEMM-bound shape.
#pragma once

#include "dsv3/tensor/tensor.hpp"

#include <functional>
#include <random>
#include <string>
#include <vector>

namespace dsv3::bench {

struct OpResult {
  std::string op;
  std::string shape;
  double seconds;  // median time of one call
  double flops;    // useful FLOPs of one call (0 for memory-bound ops)
  double bytes;    // minimum bytes moved by one call
};

struct OpBenchmarkOptions {
  Device device = Device::cpu;
  double min_seconds = 0.3;  // per op: repeat until this much time has passed (at least 3 calls)
  std::int64_t tokens = 2048;  // batch·seq of the debug-shape benchmarks
  std::int64_t gemm_size = 2048;  // the GEMM-bound shape: square matrices of this size
};

// Normal values of the given deviation in `dtype` (drawn in f32 on the host, converted) on `device`.
Tensor random_tensor(Shape shape, Device device, std::mt19937& rng, float stddev = 1.0f, DType dtype = DType::f32);

// Median seconds of one call of `run`, repeated until min_seconds have passed (at least 3 calls, after a warm-up).
// `run` includes whatever synchronisation makes its work complete (ops::synchronize for GPU ops).
double median_seconds(const std::function<void()>& run, double min_seconds);

// The library's own cblas_sgemm at gemm_size³: the reference rate for matmul and attention.
OpResult benchmark_blas_sgemm(const OpBenchmarkOptions& options);
// Every op of the library, forward and backward, at the debug model's shapes.
std::vector<OpResult> benchmark_ops(const OpBenchmarkOptions& options);

}  // namespace dsv3::bench
