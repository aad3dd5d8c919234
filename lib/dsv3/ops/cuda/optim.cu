#include "dsv3/ops/cuda/optim.hpp"

#include "dsv3/ops/cuda/common.cuh"

namespace dsv3::cuda {

namespace {

constexpr int kThreads = 256;
// Blocks per buffer in the first stage of sum_of_squares: a fixed function of n (never of the GPU), so the order
// of the additions, and the result, only depend on the input.
constexpr std::int64_t kMaxSumBlocks = 1024;
constexpr int kFinalThreads = 1024;

struct AdamWFloats {
  float decay, beta1, beta2, one_minus_beta1, one_minus_beta2, step_size, bias_correction2_sqrt, eps;
};

// torch's order of operations, per element in fp32 (the CPU reference's f32 arithmetic).
__device__ __forceinline__ void adamw_element(float& p, float g, float& m, float& v, const AdamWFloats& s) {
  p *= s.decay;  // decoupled weight decay, before the Adam update
  m = s.beta1 * m + s.one_minus_beta1 * g;
  v = s.beta2 * v + s.one_minus_beta2 * g * g;
  const float denominator = sqrtf(v) / s.bias_correction2_sqrt + s.eps;
  p -= s.step_size * (m / denominator);
}

template <int N>
__global__ void adamw_kernel(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, AdamWFloats s,
                             std::int64_t n) {
  using P = Pack<float, N>;
  const std::int64_t packs = n / N;
  for (std::int64_t i = first_index(); i < packs; i += index_stride()) {
    P p = reinterpret_cast<const P*>(param)[i];
    const P g = reinterpret_cast<const P*>(grad)[i];
    P m = reinterpret_cast<const P*>(exp_avg)[i];
    P v = reinterpret_cast<const P*>(exp_avg_sq)[i];
#pragma unroll
    for (int k = 0; k < N; ++k) adamw_element(p.values[k], g.values[k], m.values[k], v.values[k], s);
    reinterpret_cast<P*>(param)[i] = p;
    reinterpret_cast<P*>(exp_avg)[i] = m;
    reinterpret_cast<P*>(exp_avg_sq)[i] = v;
  }
  for (std::int64_t i = packs * N + first_index(); i < n; i += index_stride()) {
    adamw_element(param[i], grad[i], exp_avg[i], exp_avg_sq[i], s);
  }
}

// partial[blockIdx.x] = Σ x² over the elements i ≡ (block, thread) of a grid-stride loop, in double.
template <class T>
__global__ void sum_of_squares_kernel(double* partial, const T* x, std::int64_t n) {
  __shared__ double scratch[32];
  double sum = 0.0;
  for (std::int64_t i = first_index(); i < n; i += index_stride()) {
    const double value = to_float(x[i]);
    sum += value * value;
  }
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

// total[0] = Σ partial[0, count), one block, each thread's share in index order, then the block's tree.
__global__ void sum_partials_kernel(double* total, const double* partial, std::int64_t count) {
  __shared__ double scratch[32];
  double sum = 0.0;
  for (std::int64_t i = threadIdx.x; i < count; i += blockDim.x) sum += partial[i];
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) total[0] = sum;
}

unsigned sum_blocks(std::int64_t n) {
  return static_cast<unsigned>(std::clamp<std::int64_t>((n + kThreads - 1) / kThreads, 1, kMaxSumBlocks));
}

}  // namespace

void adamw_step(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, const AdamWScalars& scalars,
                std::int64_t n, void* stream) {
  if (n == 0) return;
  const AdamWFloats s{static_cast<float>(scalars.decay),
                      static_cast<float>(scalars.beta1),
                      static_cast<float>(scalars.beta2),
                      static_cast<float>(1.0 - scalars.beta1),
                      static_cast<float>(1.0 - scalars.beta2),
                      static_cast<float>(scalars.step_size),
                      static_cast<float>(scalars.bias_correction2_sqrt),
                      static_cast<float>(scalars.eps)};
  with_pack_width<float>(aligned16({param, grad, exp_avg, exp_avg_sq}), [&](auto width) {
    constexpr int N = decltype(width)::value;
    adamw_kernel<N>
        <<<grid_for(n / N + 1, kThreads), kThreads, 0, as_stream(stream)>>>(param, grad, exp_avg, exp_avg_sq, s, n);
  });
  check_launch("adamw_step");
}

double sum_of_squares(const FloatBuffer* buffers, std::int64_t count, void* stream) {
  const char* op = "sum_of_squares";
  std::int64_t partials = 0;
  for (std::int64_t b = 0; b < count; ++b) partials += buffers[b].n > 0 ? sum_blocks(buffers[b].n) : 0;
  if (partials == 0) return 0.0;
  StreamBuffer<double> partial(partials + 1, stream, op);  // the block sums of every buffer, then the total
  double* total = partial.get() + partials;
  std::int64_t offset = 0;
  for (std::int64_t b = 0; b < count; ++b) {
    const FloatBuffer& buffer = buffers[b];
    if (buffer.n == 0) continue;
    const unsigned blocks = sum_blocks(buffer.n);
    with_float(buffer.type, [&](auto tag) {
      using T = typename decltype(tag)::type;
      sum_of_squares_kernel<<<blocks, kThreads, 0, as_stream(stream)>>>(partial.get() + offset,
                                                                        static_cast<const T*>(buffer.data), buffer.n);
    });
    check_launch(op);
    offset += blocks;
  }
  sum_partials_kernel<<<1, kFinalThreads, 0, as_stream(stream)>>>(total, partial.get(), partials);
  check_launch(op);
  return read_element(total, stream, op);
}

}  // namespace dsv3::cuda
