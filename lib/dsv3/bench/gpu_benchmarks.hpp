// GPU benchmarks (dsv3_bench gpu): the CUDA backend's GEMM and grouped GEMM beside cuBLAS's own cublasGemmEx on
// the same operands, flash attention, in bf16 at DeepSeek's shapes. The training step on a GPU is the step
// benchmark with device cuda.
#pragma once

#include "dsv3/bench/op_benchmarks.hpp"

#include <cstdint>
#include <vector>

namespace dsv3::bench {

struct GpuBenchmarkOptions {
  double min_seconds = 0.5;
  std::int64_t gemm_size = 8192;  // the square GEMM
  std::int64_t seq_len = 4096;    // attention: one sequence per batch entry
  std::int64_t batch = 2;         // attention batch; the grouped GEMM routes batch·seq_len tokens
};

// Rows: "cublasGemmEx" and "matmul" at gemm_size³ (bf16, then f32 storage on the bf16 tensor cores); the 16B
// flavor's routed experts (64 experts, top 6, [1408, 2048] weights, tokens spread evenly) as one dense GEMM of the
// same total size and as grouped_linear forward and backward; attention forward and backward at the MLA head dims
// (192, 128) with 16 heads, causal.
std::vector<OpResult> benchmark_gpu_ops(const GpuBenchmarkOptions& options);

}  // namespace dsv3::bench
