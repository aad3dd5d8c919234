#include "dsv3/bench/gpu_benchmarks.hpp"

#include "dsv3/model/model_args.hpp"
#include "dsv3/ops/attention.hpp"
#include "dsv3/ops/matmul.hpp"

#include <fmt/format.h>

#include <cmath>
#include <random>

namespace dsv3::bench {

std::vector<OpResult> benchmark_gpu_ops(const GpuBenchmarkOptions& options) {
  // The 16B flavor's routed experts and attention (REFERENCE.md §1).
  const model::ModelArgs m = model::model_flavor("16B");
  const std::int64_t dim = m.dim, inter = m.moe_inter_dim, experts = m.n_routed_experts;
  const std::int64_t qk_dim = m.qk_head_dim(), v_dim = m.v_head_dim;
  std::mt19937 rng(3);
  std::vector<OpResult> results;
  constexpr double kBf16 = 2.0;
  // Each timed call ends with a synchronisation: the GPU's time, not the launch's.
  const auto add = [&](std::string op, std::string shape, double flops, double bytes, const std::function<void()>& run) {
    const double seconds = median_seconds(
        [&] {
          run();
          ops::synchronize(Device::cuda);
        },
        options.min_seconds);
    results.push_back({std::move(op), std::move(shape), seconds, flops, bytes});
  };

  {  // square GEMM: cuBLAS's plain call, the library's cuBLASLt path in bf16, and f32 storage on bf16 tensor cores
    const std::int64_t n = options.gemm_size;
    const std::string shape = fmt::format("{0}x{0}x{0}", n);
    const double flops = 2.0 * n * n * n;
    for (const DType dtype : {DType::bf16, DType::f32}) {
      const Tensor a = random_tensor(Shape{n, n}, Device::cuda, rng, 1.0f, dtype);
      const Tensor b = random_tensor(Shape{n, n}, Device::cuda, rng, 1.0f, dtype);
      const Tensor c = Tensor::empty(Shape{n, n}, dtype, Device::cuda);
      const double bytes = 3.0 * n * n * static_cast<double>(dtype_size(dtype));
      const std::string typed = fmt::format("{} {}", shape, dtype_name(dtype));
      add("cublasGemmEx", typed, flops, bytes, [&] { ops::cublas_reference_matmul(c, a, b); });
      add("matmul", typed, flops, bytes, [&] { ops::matmul(c, a, b); });
    }
  }
  {  // the routed experts of one micro-batch: dense at the same total size, then grouped
    const std::int64_t rows = options.batch * options.seq_len * m.n_activated_experts;
    const Tensor x = random_tensor(Shape{rows, dim}, Device::cuda, rng, 1.0f, DType::bf16);
    const Tensor w =
        random_tensor(Shape{experts, inter, dim}, Device::cuda, rng, 0.02f, DType::bf16);
    const Tensor y = Tensor::empty(Shape{rows, inter}, DType::bf16, Device::cuda);
    const Tensor dy = random_tensor(y.shape(), Device::cuda, rng, 1.0f, DType::bf16);
    const Tensor dx = Tensor::empty(x.shape(), DType::bf16, Device::cuda);
    const Tensor dw = Tensor::zeros(w.shape(), DType::bf16, Device::cuda);
    Tensor offsets = Tensor::empty(Shape{experts + 1}, DType::i64);
    for (std::int64_t e = 0; e <= experts; ++e) offsets.data<std::int64_t>()[e] = rows * e / experts;
    const double flops = 2.0 * rows * dim * inter;
    const double bytes = (x.numel() + w.numel() + y.numel()) * kBf16;
    const std::string shape =
        fmt::format("{} rows, {} experts, [{}, {}] bf16", rows, experts, inter, dim);
    add("dense linear_forward", fmt::format("[{}, {}]·[{}, {}]ᵀ bf16", rows, dim, inter, dim), flops,
        bytes, [&] { ops::linear_forward(y, x, w[0]); });
    add("grouped_linear_forward", shape, flops, bytes, [&] { ops::grouped_linear_forward(y, x, w, offsets); });
    add("grouped_linear_backward", shape, 2 * flops, 2 * bytes,
        [&] { ops::grouped_linear_backward(dx, dw, dy, x, w, offsets); });
  }
  {  // flash attention at the MLA head dims, causal
    const std::int64_t B = options.batch, T = options.seq_len, H = m.n_heads;
    const Tensor q = random_tensor(Shape{B, T, H, qk_dim}, Device::cuda, rng, 1.0f, DType::bf16);
    const Tensor k = random_tensor(q.shape(), Device::cuda, rng, 1.0f, DType::bf16);
    const Tensor v = random_tensor(Shape{B, T, H, v_dim}, Device::cuda, rng, 1.0f, DType::bf16);
    const Tensor out = Tensor::empty(v.shape(), DType::bf16, Device::cuda);
    const Tensor dout = random_tensor(v.shape(), Device::cuda, rng, 1.0f, DType::bf16);
    const Tensor lse = Tensor::empty(Shape{B, H, T}, DType::f32, Device::cuda);
    const Tensor dq = Tensor::empty(q.shape(), DType::bf16, Device::cuda);
    const Tensor dk = Tensor::empty(k.shape(), DType::bf16, Device::cuda);
    const Tensor dv = Tensor::empty(v.shape(), DType::bf16, Device::cuda);
    const ops::AttentionOptions attention{.scale = 1.0 / std::sqrt(static_cast<double>(qk_dim))};
    // Causal: half of the S² products (the convention of FlashAttention's and DeepSeek's reports); the backward
    // does 2.5× the forward's (dV, dP, dS·K, dSᵀ·Q, and P recomputed).
    const double forward_flops = 2.0 * B * H * T * T * (qk_dim + v_dim) / 2.0;
    const double bytes = (q.numel() + k.numel() + v.numel() + out.numel()) * kBf16;
    const std::string shape =
        fmt::format("B {} S {} H {} dqk {} dv {} causal bf16", B, T, H, qk_dim, v_dim);
    add("attention_forward", shape, forward_flops, bytes,
        [&] { ops::attention_forward(out, lse, q, k, v, Tensor(), attention); });
    add("attention_backward", shape, 2.5 * forward_flops, 2 * bytes,
        [&] { ops::attention_backward(dq, dk, dv, dout, q, k, v, out, lse, Tensor(), attention); });
  }
  return results;
}

}  // namespace dsv3::bench
