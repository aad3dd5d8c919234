// dsv3_bench: op and step benchmarks with achieved FLOP/s and bytes/s against the machine's peak.
//   dsv3_bench ops [--tokens 2048] [--gemm-size 2048] [--min-seconds 0.3]
#include "dsv3/bench/op_benchmarks.hpp"
#include "dsv3/bench/peak.hpp"
#include "dsv3/core/error.hpp"

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include <iostream>
#include <string>

namespace po = boost::program_options;
using namespace dsv3;

namespace {

double gflops(const bench::OpResult& result) { return result.flops / result.seconds / 1e9; }

void print_row(const bench::OpResult& result, double sgemm_gflops) {
  const std::string rate = result.flops > 0
                               ? fmt::format("{:9.1f} GFLOP/s {:5.1f}% of sgemm", gflops(result),
                                             100.0 * gflops(result) / sgemm_gflops)
                               : fmt::format("{:9.2f} GB/s", result.bytes / result.seconds / 1e9);
  fmt::print("{:<26} {:<44} {:10.3f} ms  {}\n", result.op, result.shape, result.seconds * 1e3, rate);
}

const bench::OpResult* find(const std::vector<bench::OpResult>& results, const std::string& op) {
  for (const auto& result : results) {
    if (result.op == op) return &result;
  }
  return nullptr;
}

int run_ops(const bench::OpBenchmarkOptions& options) {
  const bench::PeakMeasurement peak = bench::measure_fp32_peak();
  const bench::OpResult sgemm = bench::benchmark_blas_sgemm(options);
  fmt::print("dsv3_bench ops: fp32, {} thread(s); debug-model shapes with {} tokens\n", peak.threads, options.tokens);
  fmt::print("fp32 peak (FMA loop)       {:9.1f} GFLOP/s\n", peak.gflops);
  fmt::print("BLAS sgemm {:<15} {:9.1f} GFLOP/s = {:.1f}% of peak\n\n", sgemm.shape, gflops(sgemm),
             100.0 * gflops(sgemm) / peak.gflops);
  const std::vector<bench::OpResult> results = bench::benchmark_ops(options);
  for (const auto& result : results) print_row(result, gflops(sgemm));

  // The two targets, as ratios measured in this run.
  const bench::OpResult* matmul = find(results, "matmul");
  const bench::OpResult* forward = find(results, "attention_forward");
  const bench::OpResult* backward = find(results, "attention_backward");
  const double matmul_ratio = gflops(*matmul) / gflops(sgemm);
  const double attention_gflops =
      (forward->flops + backward->flops) / (forward->seconds + backward->seconds) / 1e9;
  const double attention_ratio = attention_gflops / gflops(sgemm);
  fmt::print("\nmatmul / sgemm                 {:.3f}  (target ≥ 0.90)\n", matmul_ratio);
  fmt::print("attention fwd+bwd / sgemm      {:.3f}  ({:.1f} GFLOP/s, causal FLOPs; target ≥ 0.40)\n",
             attention_ratio, attention_gflops);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bench::OpBenchmarkOptions options;
  std::string command;
  po::options_description described("dsv3_bench ops: per-op throughput on the CPU reference backend");
  described.add_options()("help,h", "this help")(
      "tokens", po::value(&options.tokens)->default_value(options.tokens), "tokens (batch·seq) of the debug shapes")(
      "gemm-size", po::value(&options.gemm_size)->default_value(options.gemm_size), "side of the GEMM-bound shape")(
      "min-seconds", po::value(&options.min_seconds)->default_value(options.min_seconds),
      "minimum time spent per op");
  po::options_description hidden;
  hidden.add_options()("command", po::value(&command));
  po::options_description all;
  all.add(described).add(hidden);
  po::positional_options_description positional;
  positional.add("command", 1);
  try {
    po::variables_map values;
    po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), values);
    po::notify(values);
    if (values.count("help") || command.empty()) {
      std::cout << "usage: dsv3_bench ops [options]\n" << described;
      return command.empty() && !values.count("help") ? 2 : 0;
    }
    DSV3_CHECK(command == "ops", "dsv3_bench: unknown command '{}' (known: ops)", command);
    DSV3_CHECK(options.tokens > 0 && options.gemm_size > 0 && options.min_seconds >= 0,
               "dsv3_bench: --tokens and --gemm-size must be positive, --min-seconds non-negative");
    return run_ops(options);
  } catch (const std::exception& error) {
    fmt::print(stderr, "dsv3_bench: {}\n", error.what());
    return 1;
  }
}
