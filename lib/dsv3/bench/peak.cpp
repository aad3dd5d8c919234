#include "dsv3/bench/peak.hpp"

#include "dsv3/core/timer.hpp"
#include "dsv3/ops/matmul.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace dsv3::bench {

namespace {

// 16 floats: one AVX-512 register, or two AVX2 registers on narrower machines.
typedef float Vector16 __attribute__((vector_size(64)));

// Enough independent accumulators to cover FMA latency × issue width on current x86 cores.
constexpr int kChains = 16;
constexpr std::int64_t kInnerIterations = 1 << 14;

// One pass: kChains · kInnerIterations vector FMAs; returns a value that depends on all of them.
float fma_pass(float seed) {
  Vector16 chains[kChains];
  for (int c = 0; c < kChains; ++c) chains[c] = Vector16{} + seed * static_cast<float>(c + 1);
  const Vector16 multiplier = Vector16{} + 0.999999f;
  const Vector16 addend = Vector16{} + 1e-7f;
  for (std::int64_t i = 0; i < kInnerIterations; ++i) {
#pragma GCC unroll 16
    for (int c = 0; c < kChains; ++c) chains[c] = chains[c] * multiplier + addend;
  }
  Vector16 total = Vector16{};
  for (int c = 0; c < kChains; ++c) total += chains[c];
  float sum = 0.0f;
  for (int lane = 0; lane < 16; ++lane) sum += total[lane];
  return sum;
}

// Every pass's checksum lands here, so the compiler cannot drop the passes as unused.
volatile float g_pass_checksum_sink = 0.0f;

}  // namespace

PeakMeasurement measure_fp32_peak(double seconds) {
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  constexpr double kFlopsPerPass = 2.0 * 16 * kChains * kInnerIterations;
  double best = 0.0;
  Timer total;
  while (total.seconds() < seconds) {
    std::int64_t passes = 0;
    float checksum = 0.0f;
    Timer timer;
#pragma omp parallel reduction(+ : passes, checksum)
    {
      for (int p = 0; p < 8; ++p) checksum += fma_pass(1.0f + static_cast<float>(p));
      passes += 8;
    }
    g_pass_checksum_sink = checksum;
    best = std::max(best, static_cast<double>(passes) * kFlopsPerPass / timer.seconds() / 1e9);
  }
  return {best, threads};
}

GpuPeak gpu_bf16_peak() {
  const std::string name = cuda_device_name();
  const std::pair<const char*, double> data_sheet[] = {{"H100", 989.4}, {"H200", 989.4}, {"H800", 989.4},
                                                       {"A100", 312.0}};
  for (const auto& [model, tflops] : data_sheet) {
    if (name.find(model) != std::string::npos) return {tflops, fmt::format("{}: bf16 dense, data sheet", name)};
  }
  const std::int64_t n = 8192;
  const Tensor a = Tensor::zeros(Shape{n, n}, DType::bf16, Device::cuda);
  const Tensor b = Tensor::zeros(Shape{n, n}, DType::bf16, Device::cuda);
  const Tensor c = Tensor::empty(Shape{n, n}, DType::bf16, Device::cuda);
  double best = 0.0;
  for (int repeat = 0; repeat < 10; ++repeat) {
    Timer timer;
    ops::matmul(c, a, b);
    ops::synchronize(Device::cuda);
    best = std::max(best, 2.0 * n * n * n / timer.seconds() / 1e12);
  }
  return {best, fmt::format("{}: measured, best 8192³ bf16 matmul", name)};
}

}  // namespace dsv3::bench
