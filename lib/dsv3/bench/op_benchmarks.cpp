#include "dsv3/bench/op_benchmarks.hpp"

#include "dsv3/core/timer.hpp"
#include "dsv3/ops/activation.hpp"
#include "dsv3/ops/attention.hpp"
#include "dsv3/ops/embedding.hpp"
#include "dsv3/ops/fp8.hpp"
#include "dsv3/ops/loss.hpp"
#include "dsv3/ops/matmul.hpp"
#include "dsv3/ops/norm.hpp"
#include "dsv3/ops/optim.hpp"
#include "dsv3/ops/permute.hpp"
#include "dsv3/ops/rope.hpp"
#include "dsv3/ops/router.hpp"
#include "dsv3/ops/elementwise.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

namespace dsv3::bench {

namespace {

// The debug model's extents (REFERENCE.md §1, flavor debugmodel).
struct DebugShapes {
  static constexpr std::int64_t dim = 256;
  static constexpr std::int64_t heads = 16;
  static constexpr std::int64_t qk_head_dim = 192;  // 128 nope + 64 rope
  static constexpr std::int64_t rope_dim = 64;
  static constexpr std::int64_t v_head_dim = 128;
  static constexpr std::int64_t kv_lora_rank = 512;
  static constexpr std::int64_t inter_dim = 1024;
  static constexpr std::int64_t moe_inter_dim = 256;
  static constexpr std::int64_t experts = 8;
  static constexpr std::int64_t top_k = 3;
  static constexpr std::int64_t vocab = 2048;
  static constexpr std::int64_t parameters = 33'000'000;  // REFERENCE.md: 33.0M
};


Tensor int_tensor(Shape shape, std::int64_t bound, std::mt19937& rng) {
  Tensor tensor = Tensor::empty(shape, DType::i32);
  std::uniform_int_distribution<std::int32_t> uniform(0, static_cast<std::int32_t>(bound - 1));
  for (std::int64_t i = 0; i < tensor.numel(); ++i) tensor.data<std::int32_t>()[i] = uniform(rng);
  return tensor;
}

}  // namespace

Tensor random_tensor(Shape shape, Device device, std::mt19937& rng, float stddev, DType dtype) {
  const Tensor host = Tensor::empty(shape, DType::f32);
  std::normal_distribution<float> normal(0.0f, stddev);
  float* values = host.data<float>();
  for (std::int64_t i = 0; i < host.numel(); ++i) values[i] = normal(rng);
  if (dtype == DType::f32) return host.to(device);
  const Tensor converted = Tensor::empty(shape, dtype);
  ops::convert(converted, host);
  return converted.to(device);
}

double median_seconds(const std::function<void()>& run, double min_seconds) {
  run();
  std::vector<double> samples;
  Timer total;
  while (samples.size() < 3 || total.seconds() < min_seconds) {
    Timer timer;
    run();
    samples.push_back(timer.seconds());
  }
  std::nth_element(samples.begin(), samples.begin() + samples.size() / 2, samples.end());
  return samples[samples.size() / 2];
}

OpResult benchmark_blas_sgemm(const OpBenchmarkOptions& options) {
  std::mt19937 rng(1);
  const std::int64_t n = options.gemm_size;
  const Tensor a = random_tensor(Shape{n, n}, Device::cpu, rng);
  const Tensor b = random_tensor(Shape{n, n}, Device::cpu, rng);
  const Tensor c = Tensor::empty(Shape{n, n}, DType::f32);
  const int size = static_cast<int>(n);
  const double seconds = median_seconds(
      [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, size, size, size, 1.0f, a.data<float>(), size,
                    b.data<float>(), size, 0.0f, c.data<float>(), size);
      },
      options.min_seconds);
  return {"blas sgemm", fmt::format("{0}x{0}x{0}", n), seconds, 2.0 * n * n * n, 3.0 * n * n * 4};
}

std::vector<OpResult> benchmark_ops(const OpBenchmarkOptions& options) {
  using S = DebugShapes;
  std::mt19937 rng(2);
  const Device device = options.device;
  const std::int64_t T = options.tokens;
  std::vector<OpResult> results;
  const auto add = [&](std::string op, std::string shape, double flops, double bytes, const std::function<void()>& run) {
    results.push_back({std::move(op), std::move(shape), median_seconds(run, options.min_seconds), flops, bytes});
  };
  constexpr double kF32 = 4.0;

  {  // the GEMM-bound shape, through the op interface
    const std::int64_t n = options.gemm_size;
    const Tensor a = random_tensor(Shape{n, n}, device, rng), b = random_tensor(Shape{n, n}, device, rng);
    const Tensor c = Tensor::empty(Shape{n, n}, DType::f32, device);
    add("matmul", fmt::format("{0}x{0}x{0}", n), 2.0 * n * n * n, 3.0 * n * n * kF32, [&] { ops::matmul(c, a, b); });
  }
  {  // linear layers: the query projection (dim → H·192) and the output head (dim → vocab)
    for (const auto& [name, out] : {std::pair<const char*, std::int64_t>{"wq", S::heads * S::qk_head_dim},
                                    {"output", S::vocab}}) {
      const Tensor x = random_tensor(Shape{T, S::dim}, device, rng), w = random_tensor(Shape{out, S::dim}, device, rng);
      const Tensor y = Tensor::empty(Shape{T, out}, DType::f32, device), dy = random_tensor(Shape{T, out}, device, rng);
      const Tensor dx = Tensor::empty(x.shape(), DType::f32, device), dw = Tensor::zeros(w.shape(), DType::f32, device);
      const std::string shape = fmt::format("{}: [{}, {}]·[{}, {}]ᵀ", name, T, S::dim, out, S::dim);
      const double flops = 2.0 * T * S::dim * out;
      const double bytes = (x.numel() + w.numel() + y.numel()) * kF32;
      add("linear_forward", shape, flops, bytes, [&] { ops::linear_forward(y, x, w); });
      add("linear_backward", shape, 2 * flops, 2 * bytes, [&] { ops::linear_backward(dx, dw, dy, x, w); });
    }
  }
  {  // routed experts: T·top_k rows split evenly over the experts, [moe_inter, dim] weights
    const std::int64_t rows = T * S::top_k;
    const Tensor x = random_tensor(Shape{rows, S::dim}, device, rng);
    const Tensor w = random_tensor(Shape{S::experts, S::moe_inter_dim, S::dim}, device, rng);
    const Tensor y = Tensor::empty(Shape{rows, S::moe_inter_dim}, DType::f32, device);
    const Tensor dy = random_tensor(y.shape(), device, rng);
    const Tensor dx = Tensor::empty(x.shape(), DType::f32, device), dw = Tensor::zeros(w.shape(), DType::f32, device);
    Tensor offsets = Tensor::empty(Shape{S::experts + 1}, DType::i64);
    for (std::int64_t e = 0; e <= S::experts; ++e) offsets.data<std::int64_t>()[e] = rows * e / S::experts;
    const std::string shape = fmt::format("{} rows, {} experts, [{}, {}]", rows, S::experts, S::moe_inter_dim, S::dim);
    const double flops = 2.0 * rows * S::dim * S::moe_inter_dim;
    const double bytes = (x.numel() + w.numel() + y.numel()) * kF32;
    add("grouped_linear_forward", shape, flops, bytes, [&] { ops::grouped_linear_forward(y, x, w, offsets); });
    add("grouped_linear_backward", shape, 2 * flops, 2 * bytes,
        [&] { ops::grouped_linear_backward(dx, dw, dy, x, w, offsets); });
  }
  {  // attention at the debug model's heads and head dims, one sequence of T tokens, causal
    const Tensor q = random_tensor(Shape{1, T, S::heads, S::qk_head_dim}, device, rng);
    const Tensor k = random_tensor(q.shape(), device, rng);
    const Tensor v = random_tensor(Shape{1, T, S::heads, S::v_head_dim}, device, rng);
    const Tensor out = Tensor::empty(v.shape(), DType::f32, device), dout = random_tensor(v.shape(), device, rng);
    const Tensor lse = Tensor::empty(Shape{1, S::heads, T}, DType::f32, device);
    const Tensor dq = Tensor::empty(q.shape(), DType::f32, device), dk = Tensor::empty(k.shape(), DType::f32, device);
    const Tensor dv = Tensor::empty(v.shape(), DType::f32, device);
    const ops::AttentionOptions attention{.scale = 1.0 / std::sqrt(static_cast<double>(S::qk_head_dim))};
    // Causal FLOPs: half of the S² work (DeepSeek's convention); backward does 2.5× the forward's products.
    const double forward_flops = 2.0 * S::heads * T * T * (S::qk_head_dim + S::v_head_dim) / 2.0;
    const double bytes = (q.numel() + k.numel() + v.numel() + out.numel()) * kF32;
    const std::string shape = fmt::format("S {}, H {}, dqk {}, dv {}, causal", T, S::heads, S::qk_head_dim, S::v_head_dim);
    add("attention_forward", shape, forward_flops, bytes,
        [&] { ops::attention_forward(out, lse, q, k, v, Tensor(), attention); });
    add("attention_backward", shape, 2.5 * forward_flops, 2 * bytes,
        [&] { ops::attention_backward(dq, dk, dv, dout, q, k, v, out, lse, Tensor(), attention); });
  }
  {  // RMSNorm over the hidden state
    const Tensor x = random_tensor(Shape{T, S::dim}, device, rng), w = random_tensor(Shape{S::dim}, device, rng);
    const Tensor y = Tensor::empty(x.shape(), DType::f32, device), dy = random_tensor(x.shape(), device, rng);
    const Tensor rstd = Tensor::empty(Shape{T}, DType::f32, device), dx = Tensor::empty(x.shape(), DType::f32, device);
    const Tensor dw = Tensor::zeros(w.shape(), DType::f32, device);
    const std::string shape = fmt::format("[{}, {}]", T, S::dim);
    add("rmsnorm_forward", shape, 0, 2.0 * x.numel() * kF32, [&] { ops::rmsnorm_forward(y, rstd, x, w, 1e-5); });
    add("rmsnorm_backward", shape, 0, 3.0 * x.numel() * kF32, [&] { ops::rmsnorm_backward(dx, dw, dy, x, w, rstd); });
  }
  {  // RoPE on the query's rope part
    const ops::RopeConfig config{.rope_dim = S::rope_dim};
    const Tensor cos = Tensor::empty(Shape{T, S::rope_dim / 2}, DType::f32, device);
    const Tensor sin = Tensor::empty(cos.shape(), DType::f32, device);
    ops::rope_table(cos, sin, config);
    Tensor positions = Tensor::empty(Shape{T}, DType::i32);
    for (std::int64_t t = 0; t < T; ++t) positions.data<std::int32_t>()[t] = static_cast<std::int32_t>(t);
    positions = positions.to(device);
    const Tensor x = random_tensor(Shape{T, S::heads, S::rope_dim}, device, rng);
    add("rope_forward", fmt::format("[{}, {}, {}] in place", T, S::heads, S::rope_dim), 0, 2.0 * x.numel() * kF32,
        [&] { ops::rope_forward(x, x, cos, sin, positions); });
  }
  {  // SwiGLU of the dense FFN
    const Tensor gate = random_tensor(Shape{T, S::inter_dim}, device, rng), up = random_tensor(gate.shape(), device, rng);
    const Tensor h = Tensor::empty(gate.shape(), DType::f32, device), dh = random_tensor(gate.shape(), device, rng);
    const Tensor dgate = Tensor::empty(gate.shape(), DType::f32, device), dup = Tensor::empty(gate.shape(), DType::f32, device);
    const std::string shape = fmt::format("[{}, {}]", T, S::inter_dim);
    add("swiglu_forward", shape, 0, 3.0 * gate.numel() * kF32, [&] { ops::swiglu_forward(h, gate, up); });
    add("swiglu_backward", shape, 0, 5.0 * gate.numel() * kF32, [&] { ops::swiglu_backward(dgate, dup, dh, gate, up); });
  }
  {  // router, permutation and the weighted combination of the routed experts
    const Tensor logits = random_tensor(Shape{T, S::experts}, device, rng);
    const Tensor scores = Tensor::empty(logits.shape(), DType::f32, device);
    const Tensor experts = Tensor::empty(Shape{T, S::top_k}, DType::i32, device);
    const Tensor weights = Tensor::empty(Shape{T, S::top_k}, DType::f32, device);
    const ops::RouterOptions router{.score = ops::RouterScore::softmax, .top_k = S::top_k};
    add("router_forward", fmt::format("[{}, {}] top {}", T, S::experts, S::top_k), 0,
        2.0 * logits.numel() * kF32 + 2.0 * experts.numel() * kF32,
        [&] { ops::router_forward(scores, experts, weights, logits, Tensor(), router); });
    const ops::PermutePlan plan = ops::make_permute_plan(experts.to(Device::cpu), S::experts);
    const Tensor x = random_tensor(Shape{T, S::dim}, device, rng);
    const Tensor permuted = Tensor::empty(Shape{T * S::top_k, S::dim}, DType::f32, device);
    const Tensor combined = Tensor::empty(x.shape(), DType::f32, device);
    const std::string shape = fmt::format("[{}, {}] × top {}", T, S::dim, S::top_k);
    add("permute_forward", shape, 0, 2.0 * permuted.numel() * kF32, [&] { ops::permute_forward(permuted, x, plan); });
    add("unpermute_forward", shape, 0, (permuted.numel() + x.numel()) * kF32,
        [&] { ops::unpermute_forward(combined, permuted, weights, plan); });
  }
  {  // embedding and the fused cross-entropy at the debug vocabulary
    const Tensor table = random_tensor(Shape{S::vocab, S::dim}, device, rng);
    const Tensor ids = int_tensor(Shape{T}, S::vocab, rng).to(device);
    const Tensor y = Tensor::empty(Shape{T, S::dim}, DType::f32, device);
    add("embedding_forward", fmt::format("[{}] → [{}, {}]", T, T, S::dim), 0, 2.0 * y.numel() * kF32,
        [&] { ops::embedding_forward(y, table, ids); });
    const Tensor logits = random_tensor(Shape{T, S::vocab}, device, rng);
    const Tensor lse = Tensor::empty(Shape{T}, DType::f32, device), loss = Tensor::empty(Shape{}, DType::f32, device);
    const Tensor dlogits = Tensor::empty(logits.shape(), DType::f32, device);
    const std::string shape = fmt::format("[{}, {}]", T, S::vocab);
    add("cross_entropy_forward", shape, 0, logits.numel() * kF32,
        [&] { ops::cross_entropy_forward(loss, lse, logits, ids); });
    add("cross_entropy_backward", shape, 0, 2.0 * logits.numel() * kF32,
        [&] { ops::cross_entropy_backward(dlogits, logits, lse, ids, 1.0 / T); });
  }
  {  // optimizer over a flat buffer the size of the debug model
    const Shape shape{S::parameters};
    const Tensor param = random_tensor(shape, device, rng), grad = random_tensor(shape, device, rng);
    const Tensor exp_avg = Tensor::zeros(shape, DType::f32, device), exp_avg_sq = Tensor::zeros(shape, DType::f32, device);
    std::int64_t step = 0;
    const std::string label = fmt::format("{:.1f}M parameters", S::parameters / 1e6);
    add("adamw_step", label, 0, 7.0 * param.numel() * kF32,
        [&] { ops::adamw_step(param, grad, exp_avg, exp_avg_sq, {.lr = 1e-4, .step = ++step}); });
    const Tensor tensors[] = {grad};
    add("global_l2_norm", label, 0, grad.numel() * kF32, [&] { ops::global_l2_norm(tensors); });
  }
  {  // fp8 block quantisation of a weight matrix (HF export), and bf16 rounding
    const std::int64_t n = options.gemm_size;
    const Tensor w = random_tensor(Shape{n, n}, device, rng, 0.02f);
    const Tensor q = Tensor::empty(w.shape(), DType::fp8_e4m3, device);
    const Tensor scale_inv = Tensor::empty(Shape{(n + 127) / 128, (n + 127) / 128}, DType::f32, device);
    const std::string shape = fmt::format("[{}, {}]", n, n);
    add("fp8_quantize_blocks", shape, 0, 5.0 * w.numel(), [&] { ops::fp8_quantize_blocks(q, scale_inv, w); });
    const Tensor rounded = Tensor::empty(w.shape(), DType::f32, device);
    add("round_to_bf16", shape, 0, 2.0 * w.numel() * kF32, [&] { ops::round_to_bf16(rounded, w); });
  }
  return results;
}

}  // namespace dsv3::bench
