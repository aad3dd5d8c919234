#include "dsv3/ops/cuda/routing.hpp"

#include "dsv3/ops/cuda/common.cuh"

namespace dsv3::cuda {

namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kThreads = kWarpsPerBlock * 32;

// The position of the largest available value in [0, n) over the warp, NaN read as −∞ and ties to the lower
// index, as the CPU's scan picks: every lane returns it. n ≥ 1 and at least one entry is available.
__device__ int warp_argmax(const float* values, const unsigned char* available, int n) {
  float best = -INFINITY;
  int best_index = -1;
  for (int i = threadIdx.x % 32; i < n; i += 32) {
    if (!available[i]) continue;
    const float v = isnan(values[i]) ? -INFINITY : values[i];
    if (best_index < 0 || v > best) {  // lanes scan ascending: equal values keep the lower index
      best = v;
      best_index = i;
    }
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, best, offset);
    const int other_index = __shfl_xor_sync(0xffffffffu, best_index, offset);
    const bool take = other_index >= 0 &&
                      (best_index < 0 || other > best || (other == best && other_index < best_index));
    if (take) {
      best = other;
      best_index = other_index;
    }
  }
  return best_index;
}

// One warp per token. Shared memory per warp: biased scores [E] f32, available flags [E], group scores [G] f32,
// group flags [G].
template <class T>
__global__ void router_forward_kernel(T* scores, std::int32_t* experts, T* weights, const T* logits,
                                      const float* bias, RouterShape shape) {
  extern __shared__ unsigned char shared[];
  const int E = static_cast<int>(shape.experts), G = static_cast<int>(shape.groups);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::size_t per_warp = (5 * static_cast<std::size_t>(E) + 5 * G + 15) / 16 * 16;
  float* biased = reinterpret_cast<float*>(shared + warp * per_warp);
  float* group_score = biased + E;
  unsigned char* available = reinterpret_cast<unsigned char*>(group_score + G);
  unsigned char* group_available = available + E;
  const std::int64_t t = blockIdx.x * std::int64_t{kWarpsPerBlock} + warp;
  if (t >= shape.tokens) return;  // whole warps leave together: no block barrier below
  const T* logit = logits + t * E;
  T* score = scores + t * E;

  // Scores in fp32: softmax over the row or sigmoid per expert; stored in the storage type, and the selection and
  // the weights read the stored values, as the CPU reads its own.
  float row_max = -INFINITY;
  if (!shape.sigmoid) {
    for (int e = lane; e < E; e += 32) row_max = fmaxf(row_max, to_float(logit[e]));
    row_max = warp_max(row_max);
  }
  float row_sum = 0.0f;
  for (int e = lane; e < E; e += 32) {
    const float z = to_float(logit[e]);
    const float s = shape.sigmoid ? 1.0f / (1.0f + expf(-z)) : expf(z - row_max);
    biased[e] = s;
    row_sum += s;
  }
  row_sum = shape.sigmoid ? 1.0f : warp_sum(row_sum);
  for (int e = lane; e < E; e += 32) {
    const T stored = from_float<T>(biased[e] / row_sum);
    score[e] = stored;
    biased[e] = to_float(stored) + (bias != nullptr ? bias[e] : 0.0f);
    available[e] = 1;
  }
  __syncwarp();

  if (G > 1) {
    // Group score = the sum of its two largest biased scores; keep the top_groups best groups.
    const int group_size = E / G;
    for (int g = 0; g < G; ++g) {
      const int first = warp_argmax(biased + g * group_size, available + g * group_size, group_size);
      float sum = biased[g * group_size + first];
      if (group_size > 1) {
        __syncwarp();
        if (lane == 0) available[g * group_size + first] = 0;
        __syncwarp();
        const int second = warp_argmax(biased + g * group_size, available + g * group_size, group_size);
        sum += biased[g * group_size + second];
      }
      if (lane == 0) {
        group_score[g] = sum;
        group_available[g] = 1;
      }
      __syncwarp();
    }
    for (int e = lane; e < E; e += 32) available[e] = 0;
    __syncwarp();
    for (std::int64_t pick = 0; pick < shape.top_groups; ++pick) {
      const int g = warp_argmax(group_score, group_available, G);
      __syncwarp();
      if (lane == 0) group_available[g] = 0;
      for (int e = g * group_size + lane; e < (g + 1) * group_size; e += 32) available[e] = 1;
      __syncwarp();
    }
  }

  // top_k picks; lane k keeps pick k's unbiased score for the weights (K ≤ 32 is checked by the host).
  float chosen = 0.0f;
  for (std::int64_t k = 0; k < shape.top_k; ++k) {
    const int e = warp_argmax(biased, available, E);
    __syncwarp();
    if (lane == 0) {
      available[e] = 0;
      experts[t * shape.top_k + k] = e;
    }
    if (lane == k) chosen = to_float(score[e]);
    __syncwarp();
  }
  const float chosen_sum = warp_sum(lane < shape.top_k ? chosen : 0.0f);
  if (lane < shape.top_k) {
    float weight = chosen;
    if (shape.route_norm) weight /= chosen_sum + 1e-20f;
    weights[t * shape.top_k + lane] = from_float<T>(weight * static_cast<float>(shape.route_scale));
  }
}

// One warp per token: dL/dscore (from the weights, plus dscores when given) into dlogits, then through the
// softmax or sigmoid Jacobian in place.
template <class T>
__global__ void router_backward_kernel(T* dlogits, const T* dweights, const T* scores, const std::int32_t* experts,
                                       const T* dscores, RouterShape shape) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t t = blockIdx.x * std::int64_t{kWarpsPerBlock} + warp;
  if (t >= shape.tokens) return;
  const std::int64_t E = shape.experts, K = shape.top_k;
  const T* score = scores + t * E;
  T* dlogit = dlogits + t * E;
  float chosen = 0.0f, dweight = 0.0f;
  if (lane < K) {
    chosen = to_float(score[experts[t * K + lane]]);
    dweight = to_float(dweights[t * K + lane]);
  }
  const float chosen_sum = warp_sum(chosen);
  const float dweight_dot_score = warp_sum(dweight * chosen);
  const float denominator = shape.route_norm ? chosen_sum + 1e-20f : 1.0f;
  const float shift = shape.route_norm ? dweight_dot_score / denominator : 0.0f;
  const float scale = static_cast<float>(shape.route_scale);
  // dL/dscore[e] = the direct part + the weights' part for a chosen e (a scan of the K picks: K ≤ 32). Computed
  // twice, for the Jacobian's dot product and then per element, rather than rounded through dlogits' storage.
  const auto dscore_of = [&](std::int64_t e) {
    float dscore = dscores != nullptr ? to_float(dscores[t * E + e]) : 0.0f;
    for (std::int64_t k = 0; k < K; ++k) {
      if (experts[t * K + k] == e) dscore += scale * (to_float(dweights[t * K + k]) - shift) / denominator;
    }
    return dscore;
  };
  float dot = 0.0f;
  for (std::int64_t e = lane; e < E; e += 32) dot += dscore_of(e) * to_float(score[e]);
  dot = warp_sum(dot);
  for (std::int64_t e = lane; e < E; e += 32) {
    const float s = to_float(score[e]), dscore = dscore_of(e);
    dlogit[e] = from_float<T>(shape.sigmoid ? dscore * s * (1.0f - s) : s * (dscore - dot));
  }
}

// Gathers: one block row per output row, threads across the features.
template <class T>
__global__ void permute_forward_kernel(T* y, const T* x, const std::int32_t* source_rows, std::int64_t rows,
                                       std::int64_t features) {
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* from = x + source_rows[r] * features;
    for (std::int64_t d = threadIdx.x; d < features; d += blockDim.x) y[r * features + d] = from[d];
  }
}

// dx[t] = Σ_k dy[slot_rows[t, k]]: a gather in k order, so no atomics and the same sum every run.
template <class T>
__global__ void permute_backward_kernel(T* dx, const T* dy, const std::int32_t* slot_rows, std::int64_t tokens,
                                        std::int64_t top_k, std::int64_t features) {
  for (std::int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    for (std::int64_t d = threadIdx.x; d < features; d += blockDim.x) {
      float sum = 0.0f;
      for (std::int64_t k = 0; k < top_k; ++k) sum += to_float(dy[slot_rows[t * top_k + k] * features + d]);
      dx[t * features + d] = from_float<T>(sum);
    }
  }
}

template <class T>
__global__ void unpermute_forward_kernel(T* y, const T* expert_out, const T* weights, const std::int32_t* slot_rows,
                                         std::int64_t tokens, std::int64_t top_k, std::int64_t features) {
  for (std::int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    for (std::int64_t d = threadIdx.x; d < features; d += blockDim.x) {
      float sum = 0.0f;
      for (std::int64_t k = 0; k < top_k; ++k) {
        sum += to_float(weights[t * top_k + k]) * to_float(expert_out[slot_rows[t * top_k + k] * features + d]);
      }
      y[t * features + d] = from_float<T>(sum);
    }
  }
}

// One warp per assignment (t, k): the scaled copy of dy[t] and the dot product for dweights[t, k].
template <class T>
__global__ void unpermute_backward_kernel(T* dexpert_out, T* dweights, const T* dy, const T* expert_out,
                                          const T* weights, const std::int32_t* slot_rows, std::int64_t assignments,
                                          std::int64_t top_k, std::int64_t features) {
  const std::int64_t a = blockIdx.x * std::int64_t{kWarpsPerBlock} + threadIdx.x / 32;
  if (a >= assignments) return;
  const int lane = threadIdx.x % 32;
  const std::int64_t t = a / top_k, row = slot_rows[a];
  const float weight = to_float(weights[a]);
  float dot = 0.0f;
  for (std::int64_t d = lane; d < features; d += 32) {
    const float g = to_float(dy[t * features + d]);
    dexpert_out[row * features + d] = from_float<T>(weight * g);
    dot += g * to_float(expert_out[row * features + d]);
  }
  dot = warp_sum(dot);
  if (lane == 0) dweights[a] = from_float<T>(dot);
}

unsigned warp_blocks(std::int64_t items) { return static_cast<unsigned>((items + kWarpsPerBlock - 1) / kWarpsPerBlock); }
unsigned row_blocks(std::int64_t rows) { return static_cast<unsigned>(std::clamp<std::int64_t>(rows, 1, 65535)); }
int row_threads(std::int64_t features) { return features >= 256 ? 256 : 128; }

}  // namespace

void router_forward(void* scores, std::int32_t* experts, void* weights, const void* logits, const float* expert_bias,
                    Float type, const RouterShape& shape, void* stream) {
  if (shape.tokens == 0) return;
  DSV3_CHECK(shape.top_k <= 32, "router_forward: top_k {} > 32 is not supported on CUDA (one pick per lane)",
             shape.top_k);
  const std::size_t per_warp = (5 * static_cast<std::size_t>(shape.experts) + 5 * shape.groups + 15) / 16 * 16;
  const std::size_t shared = per_warp * kWarpsPerBlock;
  DSV3_CHECK(shared <= 48 * 1024, "router_forward: {} experts need {} bytes of shared memory per block", shape.experts,
             shared);
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    router_forward_kernel<T><<<warp_blocks(shape.tokens), kThreads, shared, as_stream(stream)>>>(
        static_cast<T*>(scores), experts, static_cast<T*>(weights), static_cast<const T*>(logits), expert_bias, shape);
  });
  check_launch("router_forward");
}

void router_backward(void* dlogits, const void* dweights, const void* scores, const std::int32_t* experts,
                     const void* dscores, Float type, const RouterShape& shape, void* stream) {
  if (shape.tokens == 0) return;
  DSV3_CHECK(shape.top_k <= 32, "router_backward: top_k {} > 32 is not supported on CUDA", shape.top_k);
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    router_backward_kernel<T><<<warp_blocks(shape.tokens), kThreads, 0, as_stream(stream)>>>(
        static_cast<T*>(dlogits), static_cast<const T*>(dweights), static_cast<const T*>(scores), experts,
        static_cast<const T*>(dscores), shape);
  });
  check_launch("router_backward");
}

void permute_forward(void* y, const void* x, const std::int32_t* source_rows, Float type, std::int64_t rows,
                     std::int64_t features, void* stream) {
  if (rows == 0 || features == 0) return;
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    permute_forward_kernel<T><<<row_blocks(rows), row_threads(features), 0, as_stream(stream)>>>(
        static_cast<T*>(y), static_cast<const T*>(x), source_rows, rows, features);
  });
  check_launch("permute_forward");
}

void permute_backward(void* dx, const void* dy, const std::int32_t* slot_rows, Float type, std::int64_t tokens,
                      std::int64_t top_k, std::int64_t features, void* stream) {
  if (tokens == 0 || features == 0) return;
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    permute_backward_kernel<T><<<row_blocks(tokens), row_threads(features), 0, as_stream(stream)>>>(
        static_cast<T*>(dx), static_cast<const T*>(dy), slot_rows, tokens, top_k, features);
  });
  check_launch("permute_backward");
}

void unpermute_forward(void* y, const void* expert_out, const void* weights, const std::int32_t* slot_rows,
                       Float type, std::int64_t tokens, std::int64_t top_k, std::int64_t features, void* stream) {
  if (tokens == 0 || features == 0) return;
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    unpermute_forward_kernel<T><<<row_blocks(tokens), row_threads(features), 0, as_stream(stream)>>>(
        static_cast<T*>(y), static_cast<const T*>(expert_out), static_cast<const T*>(weights), slot_rows, tokens,
        top_k, features);
  });
  check_launch("unpermute_forward");
}

void unpermute_backward(void* dexpert_out, void* dweights, const void* dy, const void* expert_out, const void* weights,
                        const std::int32_t* slot_rows, Float type, std::int64_t tokens, std::int64_t top_k,
                        std::int64_t features, void* stream) {
  const std::int64_t assignments = tokens * top_k;
  if (assignments == 0) return;
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    unpermute_backward_kernel<T><<<warp_blocks(assignments), kThreads, 0, as_stream(stream)>>>(
        static_cast<T*>(dexpert_out), static_cast<T*>(dweights), static_cast<const T*>(dy),
        static_cast<const T*>(expert_out), static_cast<const T*>(weights), slot_rows, assignments, top_k, features);
  });
  check_launch("unpermute_backward");
}

}  // namespace dsv3::cuda
