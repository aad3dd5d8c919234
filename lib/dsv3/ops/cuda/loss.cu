#include "dsv3/ops/cuda/loss.hpp"

#include "dsv3/ops/cuda/checks.hpp"
#include "dsv3/ops/cuda/common.cuh"

namespace dsv3::cuda {

namespace {

// One block per row (grid-stride over rows) of up to 256 threads: V = 129280 gives each about 500 logits.
constexpr int kRowThreads = 256;
constexpr unsigned kMaxRowBlocks = 1u << 16;
constexpr int kLossThreads = 1024;
constexpr int kThreads = 256;

void check_targets(const void* targets, Index index_type, std::int64_t rows, std::int64_t classes,
                   std::int64_t ignore_index, void* stream, const char* op) {
  const OutOfRange bad = find_out_of_range(targets, index_type, rows, 0, classes, ignore_index, stream, op);
  DSV3_CHECK(bad.index < 0, "{}: the target of row {} is {}, expected a class in [0, {}) or the ignore_index {}", op,
             bad.index, bad.value, classes, ignore_index);
}

// Adds e^(x − max) to sum, rescaling sum when x raises the running max. −inf logits add 0 (also while max is
// still −inf, where x − max would be NaN); a NaN logit makes the sum NaN, as on the CPU.
__device__ __forceinline__ void online_logsumexp(float& max, float& sum, float x) {
  if (x > max) {
    sum = sum * expf(max - x) + 1.0f;
    max = x;
  } else {
    sum += x == -INFINITY ? 0.0f : expf(x - max);
  }
}

template <class T, int N>
__global__ void lse_kernel(float* lse, const T* logits, std::int64_t rows, std::int64_t classes) {
  __shared__ float scratch[32];
  const std::int64_t packs = classes / N;
  for (std::int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const Pack<T, N>* x = reinterpret_cast<const Pack<T, N>*>(logits + row * classes);
    float max = -INFINITY, sum = 0.0f;
    for (std::int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      const Pack<T, N> xp = x[p];
#pragma unroll
      for (int k = 0; k < N; ++k) online_logsumexp(max, sum, to_float(xp.values[k]));
    }
    const float row_max = block_max(max, scratch);
    // A thread that saw only −inf (or nothing) has sum 0 and adds 0.
    const float row_sum = block_sum(max == -INFINITY ? 0.0f : sum * expf(max - row_max), scratch);
    if (threadIdx.x == 0) lse[row] = row_max + logf(row_sum);
  }
}

// loss = Σ over valid rows of lse − logits[target], in double: each thread's rows in order, then the block's tree.
template <class T, class I>
__global__ void loss_kernel(float* loss, const float* lse, const T* logits, const I* targets, std::int64_t rows,
                            std::int64_t classes, std::int64_t ignore_index) {
  __shared__ double scratch[32];
  double sum = 0.0;
  for (std::int64_t row = threadIdx.x; row < rows; row += blockDim.x) {
    const std::int64_t target = targets[row];
    if (target == ignore_index) continue;
    sum += static_cast<double>(lse[row]) - static_cast<double>(to_float(logits[row * classes + target]));
  }
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) loss[0] = static_cast<float>(sum);
}

// dlogits = dloss·(e^(x − lse) − onehot(target)), one rounding to T; ignored rows 0.
template <class T, class I, int N>
__global__ void cross_entropy_backward_kernel(T* dlogits, const T* logits, const float* lse, const I* targets,
                                              std::int64_t rows, std::int64_t classes, float dloss,
                                              std::int64_t ignore_index) {
  const std::int64_t packs = classes / N;
  for (std::int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    Pack<T, N>* dx = reinterpret_cast<Pack<T, N>*>(dlogits + row * classes);
    const std::int64_t target = targets[row];
    if (target == ignore_index) {
      Pack<T, N> zeros;
#pragma unroll
      for (int k = 0; k < N; ++k) zeros.values[k] = from_float<T>(0.0f);
      for (std::int64_t p = threadIdx.x; p < packs; p += blockDim.x) dx[p] = zeros;
      continue;
    }
    const Pack<T, N>* x = reinterpret_cast<const Pack<T, N>*>(logits + row * classes);
    const float row_lse = lse[row];
    for (std::int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      const Pack<T, N> xp = x[p];
      Pack<T, N> dp;
#pragma unroll
      for (int k = 0; k < N; ++k) {
        float d = dloss * expf(to_float(xp.values[k]) - row_lse);
        if (p * N + k == target) d -= dloss;
        dp.values[k] = from_float<T>(d);
      }
      dx[p] = dp;
    }
  }
}

template <class I>
__global__ void count_valid_kernel(unsigned long long* count, const I* targets, std::int64_t n,
                                   std::int64_t ignore_index) {
  unsigned valid = 0;
  for (std::int64_t i = first_index(); i < n; i += index_stride()) valid += targets[i] != ignore_index;
  valid = __reduce_add_sync(0xffffffffu, valid);  // integer sums: exact in any order
  if (threadIdx.x % 32 == 0 && valid > 0) atomicAdd(count, static_cast<unsigned long long>(valid));
}

unsigned row_blocks(std::int64_t rows) { return static_cast<unsigned>(std::min<std::int64_t>(rows, kMaxRowBlocks)); }

// Packs of kVector<T> logits when every row starts 16-byte aligned.
template <class T>
bool rows_vectorisable(std::int64_t classes, std::initializer_list<const void*> pointers) {
  return classes % kVector<T> == 0 && aligned16(pointers);
}

}  // namespace

void cross_entropy_forward(float* loss, float* lse, const void* logits, Float type, const void* targets,
                           Index index_type, std::int64_t rows, std::int64_t classes, std::int64_t ignore_index,
                           void* stream) {
  const char* op = "cross_entropy_forward";
  check_targets(targets, index_type, rows, classes, ignore_index, stream, op);
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* typed_logits = static_cast<const T*>(logits);
    if (rows > 0) {
      with_pack_width<T>(rows_vectorisable<T>(classes, {logits}), [&](auto width) {
        constexpr int N = decltype(width)::value;
        lse_kernel<T, N><<<row_blocks(rows), threads_for(classes / N, kRowThreads), 0, as_stream(stream)>>>(
            lse, typed_logits, rows, classes);
      });
      check_launch(op);
    }
    with_index(index_type, [&](auto index_tag) {
      using I = typename decltype(index_tag)::type;
      loss_kernel<<<1, kLossThreads, 0, as_stream(stream)>>>(loss, lse, typed_logits, static_cast<const I*>(targets),
                                                             rows, classes, ignore_index);
    });
  });
  check_launch(op);
}

void cross_entropy_backward(void* dlogits, const void* logits, Float type, const float* lse, const void* targets,
                            Index index_type, std::int64_t rows, std::int64_t classes, double dloss,
                            std::int64_t ignore_index, void* stream) {
  const char* op = "cross_entropy_backward";
  check_targets(targets, index_type, rows, classes, ignore_index, stream, op);
  if (rows == 0) return;
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    with_index(index_type, [&](auto index_tag) {
      using I = typename decltype(index_tag)::type;
      with_pack_width<T>(rows_vectorisable<T>(classes, {dlogits, logits}), [&](auto width) {
        constexpr int N = decltype(width)::value;
        cross_entropy_backward_kernel<T, I, N>
            <<<row_blocks(rows), threads_for(classes / N, kRowThreads), 0, as_stream(stream)>>>(
                static_cast<T*>(dlogits), static_cast<const T*>(logits), lse, static_cast<const I*>(targets), rows,
                classes, static_cast<float>(dloss), ignore_index);
      });
    });
  });
  check_launch(op);
}

std::int64_t count_valid_targets(const void* targets, Index index_type, std::int64_t n, std::int64_t ignore_index,
                                 void* stream) {
  const char* op = "count_valid_targets";
  if (n == 0) return 0;
  StreamBuffer<unsigned long long> count(1, stream, op);
  count.set(0);
  with_index(index_type, [&](auto tag) {
    using I = typename decltype(tag)::type;
    count_valid_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(
        count.get(), static_cast<const I*>(targets), n, ignore_index);
  });
  check_launch(op);
  return static_cast<std::int64_t>(count.read());
}

}  // namespace dsv3::cuda
