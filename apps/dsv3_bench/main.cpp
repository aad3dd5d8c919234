// dsv3_bench: op and step benchmarks with achieved FLOP/s and bytes/s against the machine's peak.
//   dsv3_bench ops [--tokens 2048] [--gemm-size 2048] [--min-seconds 0.3]
//   dsv3_bench step --config inputs/debug_model.toml [--steps 5] [--set training.seq_len=128 ...]
//                   [--device cuda] [--layers 8] [--peak-tflops 989]
//   dsv3_bench gpu [--gemm-size 8192] [--seq-len 4096] [--batch 2] [--min-seconds 0.5] [--peak-tflops 989]
//   mpiexec -n 2 dsv3_bench checkpoint --config inputs/debug_model.toml [--dir outputs/checkpoint_bench] [--steps 3]
#include "dsv3/bench/checkpoint_benchmark.hpp"
#include "dsv3/bench/gpu_benchmarks.hpp"
#include "dsv3/bench/op_benchmarks.hpp"
#include "dsv3/bench/peak.hpp"
#include "dsv3/bench/step_benchmark.hpp"
#include "dsv3/core/error.hpp"

#include <boost/program_options.hpp>
#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

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

// The GPU's ops: bf16 GEMMs beside cuBLAS's own, the grouped expert GEMM beside a dense one of the same size, and
// flash attention, against the GPU's bf16 dense peak.
int run_gpu(const bench::GpuBenchmarkOptions& options, double peak_tflops) {
  DSV3_CHECK(cuda_available(), "dsv3_bench gpu: {}", cuda_built() ? "no GPU is visible" : "built without CUDA");
  const std::vector<bench::OpResult> results = bench::benchmark_gpu_ops(options);
  const auto tflops = [](const bench::OpResult& r) { return r.flops / r.seconds / 1e12; };
  fmt::print("dsv3_bench gpu: bf16 tensor cores, fp32 accumulation; peak {:.0f} TFLOP/s (bf16 dense)\n\n",
             peak_tflops);
  for (const auto& r : results) {
    fmt::print("{:<24} {:<52} {:9.3f} ms {:8.1f} TFLOP/s {:5.1f}% of peak\n", r.op, r.shape, r.seconds * 1e3,
               tflops(r), 100.0 * tflops(r) / peak_tflops);
  }
  const auto rate = [&](const std::string& op, const std::string& shape_part) {
    for (const auto& r : results) {
      if (r.op == op && r.shape.find(shape_part) != std::string::npos) return tflops(r);
    }
    fail("dsv3_bench gpu: no result for {} {}", op, shape_part);
  };
  const bench::OpResult* forward = find(results, "attention_forward");
  const bench::OpResult* backward = find(results, "attention_backward");
  const double attention = (forward->flops + backward->flops) / (forward->seconds + backward->seconds) / 1e12;
  fmt::print("\nmatmul bf16 / cublasGemmEx bf16             {:.3f}\n", rate("matmul", "bf16") / rate("cublasGemmEx", "bf16"));
  fmt::print("grouped_linear_forward / dense, same size  {:.3f}  (target ≥ 0.70)\n",
             rate("grouped_linear_forward", "") / rate("dense linear_forward", ""));
  fmt::print("attention fwd+bwd                          {:.1f} TFLOP/s  (causal FLOPs; target ≥ 300)\n", attention);
  return 0;
}

// One training step of a run config: forward, backward and optimizer, against the machine's peak (the FMA loop's
// on the CPU, --peak-tflops on a GPU).
int run_step(const std::string& config_file, const std::vector<std::string>& overrides, int steps,
             const std::string& device_name, std::int64_t layers, double peak_tflops) {
  std::vector<std::string> arguments = {"--job.config_file", config_file};
  for (const std::string& override : overrides) arguments.push_back("--" + override);
  const train::JobConfig config = train::parse_job_config(arguments);
  DSV3_CHECK(device_name == "cpu" || device_name == "cuda", "dsv3_bench step: --device {} is not cpu or cuda",
             device_name);
  const Device device = device_name == "cuda" ? Device::cuda : Device::cpu;
  const bench::PeakMeasurement peak = device == Device::cpu ? bench::measure_fp32_peak()
                                                            : bench::PeakMeasurement{peak_tflops * 1e3, 0};
  const bench::StepBenchmarkResult step =
      bench::benchmark_training_step(config, {.steps = steps, .device = device, .layers = layers});
  fmt::print("dsv3_bench step: {} ({}{}), {} × {} tokens per step, fp32 weights, on {}\n", config_file,
             config.model.flavor, layers > 0 ? fmt::format(" cut to {} layers", layers) : "",
             config.training.local_batch_size, config.training.seq_len,
             device == Device::cpu ? fmt::format("{} CPU thread(s)", peak.threads) : "one GPU (bf16 tensor cores)");
  fmt::print("peak {:9.1f} GFLOP/s ({})\n", peak.gflops,
             device == Device::cpu ? "fp32 FMA loop" : "--peak-tflops, bf16 dense");
  fmt::print("forward {:9.1f} ms   backward {:9.1f} ms   optimizer {:8.1f} ms   step {:9.1f} ms   (median of {})\n",
             step.forward_seconds * 1e3, step.backward_seconds * 1e3, step.optimizer_seconds * 1e3,
             step.step_seconds() * 1e3, steps);
  fmt::print("{:.1f} tokens/s   {:.2f} GFLOP/s = {:.1f}% of peak (MFU)   ({:.4f} GFLOP per token, causal)   loss {:.4f}\n",
             step.tokens_per_second(), step.gflops(), 100.0 * step.gflops() / peak.gflops,
             step.flops_per_token / 1e9, step.loss);
  return 0;
}

// Checkpoint write and read bandwidth of a run config on the ranks of the job, beside the disk's raw sequential
// write bandwidth (dd with fsync).
int run_checkpoint(const std::string& config_file, const std::vector<std::string>& overrides,
                   const std::string& folder, int repeats) {
  MPI_Init(nullptr, nullptr);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  try {
    std::vector<std::string> arguments = {"--job.config_file", config_file};
    for (const std::string& override : overrides) arguments.push_back("--" + override);
    const train::JobConfig config = train::parse_job_config(arguments);
    const bench::CheckpointBenchmarkResult r = bench::benchmark_checkpoint(config, folder, repeats);
    if (rank == 0) {
      fmt::print("dsv3_bench checkpoint: {} ({}) on {} rank(s), {:.1f} MB per checkpoint in {} (median of {})\n",
                 config_file, config.model.flavor, ranks, static_cast<double>(r.checkpoint_bytes) / 1e6, folder,
                 repeats);
      fmt::print("write (collective, synced, renamed)  {:7.3f} s  {:8.1f} MB/s  {:5.1f}% of raw\n", r.write_seconds,
                 r.write_mb_per_second(), 100.0 * r.write_mb_per_second() / r.raw_mb_per_second());
      fmt::print("read (verified, from disk)           {:7.3f} s  {:8.1f} MB/s  {:5.1f}% of raw write\n",
                 r.read_seconds, r.read_mb_per_second(), 100.0 * r.read_mb_per_second() / r.raw_mb_per_second());
      fmt::print("raw write (dd bs=1M conv=fsync)      {:7.3f} s  {:8.1f} MB/s  ({:.1f} MB of zeros)\n",
                 r.raw_seconds, r.raw_mb_per_second(), static_cast<double>(r.raw_bytes) / 1e6);
    }
  } catch (const std::exception& error) {
    fmt::print(stderr, "dsv3_bench: error on rank {}: {}\n", rank, error.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bench::OpBenchmarkOptions options;
  std::string command;
  std::string config_file;
  std::vector<std::string> overrides;
  std::string folder = "outputs/checkpoint_bench";
  int steps = 5;
  std::string device = "cpu";
  std::int64_t layers = 0;
  double peak_tflops = 989.0;  // H100/H200 SXM, bf16 dense
  bench::GpuBenchmarkOptions gpu;
  po::options_description described("dsv3_bench ops: per-op throughput on the CPU reference backend; "
                                    "dsv3_bench step: one training step of a run config; dsv3_bench gpu: GPU GEMMs and attention; "
                                    "dsv3_bench checkpoint: checkpoint bandwidth against dd (under mpiexec)");
  described.add_options()("help,h", "this help")(
      "tokens", po::value(&options.tokens)->default_value(options.tokens), "tokens (batch·seq) of the debug shapes")(
      "gemm-size", po::value(&options.gemm_size)->default_value(options.gemm_size), "side of the GEMM-bound shape")(
      "min-seconds", po::value(&options.min_seconds)->default_value(options.min_seconds),
      "minimum time spent per op")(
      "config", po::value(&config_file), "step, checkpoint: the run config (TOML)")(
      "steps", po::value(&steps)->default_value(steps),
      "step: timed steps; checkpoint: checkpoints written and read (the median is reported)")(
      "set", po::value(&overrides)->composing(), "step, checkpoint: a config override section.key=value (repeatable)")(
      "dir", po::value(&folder)->default_value(folder), "checkpoint: folder on the disk to measure")(
      "device", po::value(&device)->default_value(device), "step: cpu or cuda")(
      "layers", po::value(&layers)->default_value(layers), "step: cut the flavor to this many layers (0: all)")(
      "peak-tflops", po::value(&peak_tflops)->default_value(peak_tflops),
      "step on cuda, gpu: the GPU's bf16 dense peak, for MFU")(
      "seq-len", po::value(&gpu.seq_len)->default_value(gpu.seq_len), "gpu: attention sequence length")(
      "batch", po::value(&gpu.batch)->default_value(gpu.batch), "gpu: attention batch (and grouped GEMM tokens)");
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
      std::cout << "usage: dsv3_bench ops|step|gpu|checkpoint [options]\n" << described;
      return command.empty() && !values.count("help") ? 2 : 0;
    }
    DSV3_CHECK(command == "ops" || command == "step" || command == "gpu" || command == "checkpoint",
               "dsv3_bench: unknown command '{}' (known: ops, step, gpu, checkpoint)", command);
    if (command == "gpu") {
      DSV3_CHECK(gpu.seq_len > 0 && gpu.batch > 0 && peak_tflops > 0, "dsv3_bench gpu: --seq-len, --batch and "
                 "--peak-tflops must be positive");
      gpu.min_seconds = options.min_seconds;
      if (!values["gemm-size"].defaulted()) gpu.gemm_size = options.gemm_size;  // the default is sized for a CPU
      return run_gpu(gpu, peak_tflops);
    }
    if (command == "checkpoint") {
      DSV3_CHECK(!config_file.empty(), "dsv3_bench checkpoint: --config FILE is required");
      DSV3_CHECK(steps > 0, "dsv3_bench checkpoint: --steps must be positive");
      return run_checkpoint(config_file, overrides, folder, steps);
    }
    if (command == "step") {
      DSV3_CHECK(!config_file.empty(), "dsv3_bench step: --config FILE is required");
      DSV3_CHECK(steps > 0, "dsv3_bench step: --steps must be positive");
      return run_step(config_file, overrides, steps, device, layers, peak_tflops);
    }
    DSV3_CHECK(options.tokens > 0 && options.gemm_size > 0 && options.min_seconds >= 0,
               "dsv3_bench: --tokens and --gemm-size must be positive, --min-seconds non-negative");
    return run_ops(options);
  } catch (const std::exception& error) {
    fmt::print(stderr, "dsv3_bench: {}\n", error.what());
    return 1;
  }
}
