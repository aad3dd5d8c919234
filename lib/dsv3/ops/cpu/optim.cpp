#include "dsv3/ops/cpu/optim.hpp"

#include "dsv3/ops/cpu/dispatch.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace dsv3::ops::cpu {

void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                const AdamWOptions& options) {
  // Per-step scalars in f64, as torch computes them in Python floats; per-element arithmetic in the tensors'
  // precision, in torch's order.
  const double step = static_cast<double>(options.step);
  const double decay = 1.0 - options.lr * options.weight_decay;
  const double step_size = options.lr / (1.0 - std::pow(options.beta1, step));
  const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(options.beta2, step));
  with_float_type(param.dtype(), "adamw_step", [&]<class T>() {
    const T decay_t = static_cast<T>(decay);
    const T beta1 = static_cast<T>(options.beta1);
    const T beta2 = static_cast<T>(options.beta2);
    const T one_minus_beta1 = static_cast<T>(1.0 - options.beta1);
    const T one_minus_beta2 = static_cast<T>(1.0 - options.beta2);
    const T step_size_t = static_cast<T>(step_size);
    const T bias_correction2_sqrt_t = static_cast<T>(bias_correction2_sqrt);
    const T eps = static_cast<T>(options.eps);
    T* p = param.data<T>();
    const T* g = grad.data<T>();
    T* m = exp_avg.data<T>();
    T* v = exp_avg_sq.data<T>();
    const std::int64_t n = param.numel();
#pragma omp parallel for simd schedule(static)
    for (std::int64_t i = 0; i < n; ++i) {
      p[i] *= decay_t;  // decoupled weight decay, before the Adam update
      m[i] = beta1 * m[i] + one_minus_beta1 * g[i];
      v[i] = beta2 * v[i] + one_minus_beta2 * g[i] * g[i];
      const T denominator = std::sqrt(v[i]) / bias_correction2_sqrt_t + eps;
      p[i] -= step_size_t * (m[i] / denominator);
    }
  });
}

double sum_of_squares(const Tensor& x) {
  // Partial sums over fixed chunks, added in chunk order: the result is the same for any thread count, which
  // bitwise-reproducible runs need (an OpenMP reduction combines the threads' sums in arrival order).
  constexpr std::int64_t kChunk = 1 << 14;
  const std::int64_t n = x.numel();
  std::vector<double> partial_sums(static_cast<std::size_t>((n + kChunk - 1) / kChunk));
  const std::int64_t chunks = static_cast<std::int64_t>(partial_sums.size());
  with_float_type(x.dtype(), "sum_of_squares", [&]<class T>() {
    const T* values = x.data<T>();
#pragma omp parallel for schedule(static)
    for (std::int64_t chunk = 0; chunk < chunks; ++chunk) {
      const std::int64_t end = std::min(n, (chunk + 1) * kChunk);
      double sum = 0.0;
      // Vector lanes sum interleaved elements: an order fixed by the build, not by the thread count.
#pragma omp simd reduction(+ : sum)
      for (std::int64_t i = chunk * kChunk; i < end; ++i) sum += static_cast<double>(values[i]) * values[i];
      partial_sums[static_cast<std::size_t>(chunk)] = sum;
    }
  });
  return std::accumulate(partial_sums.begin(), partial_sums.end(), 0.0);
}

}  // namespace dsv3::ops::cpu
