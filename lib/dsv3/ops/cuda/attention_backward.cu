// Flash attention backward on CUDA (FlashAttention-2), deterministic: every gradient element is summed by one
// thread in a fixed order, so no atomics and bit-identical repeats. Three kernels:
//   delta_kernel: delta[b, h, i] = Σ_d dout[i, d] · out[i, d] (fp32), the softmax backward's per-row term.
//   key_gradients_kernel: one CTA of 4 warps per (key tile of 64, head, batch), each warp owning 16 keys; walks
//     the query steps of 32 from the diagonal on, recomputing Pᵀ = exp(scale · k·qᵀ − lse) and accumulating
//     dv += Pᵀ·dout and dk += dSᵀ·q in registers, dSᵀ = Pᵀ ⊙ (v·doutᵀ − delta). Shared memory: k [64][Dqk+8],
//     v [64][Dv+8], q [32][Dqk+8], dout [32][Dv+8] bf16 and lse, delta [32] f32: 64.8 KB at Dqk 192, Dv 128.
//   query_gradients_kernel: one CTA per (query tile of 64, head, batch); walks the key tiles up to the diagonal,
//     accumulating dq += dS·k. Shared memory: q, k [64][Dqk+8] and dout, v [64][Dv+8]: 86.0 KB at 192/128.
// P and dS are rounded to bf16 as the A operands of their products; the scale is applied to dk and dq at the end.
// bf16 tiles arrive by cp.async, the second operand of a step (dout, v) while the first product is computed.
#include "dsv3/ops/cuda/attention.cuh"

namespace dsv3::cuda {

namespace attention_kernels {

namespace {

constexpr int kStep = kKeyKernelQueryStep;

// One warp per row of [B, S, H] (v_dim elements each); delta is [B, H, S].
template <class T>
__global__ void delta_kernel(float* delta, const T* dout, const T* out, int seq, int heads, int v_dim,
                             std::int64_t rows) {
  const int lane = threadIdx.x % 32;
  const std::int64_t warps = index_stride() / 32;
  for (std::int64_t r = first_index() / 32; r < rows; r += warps) {
    float sum = 0.0f;
    for (int d = lane; d < v_dim; d += 32) sum += to_float(dout[r * v_dim + d]) * to_float(out[r * v_dim + d]);
    sum = warp_sum(sum);
    if (lane != 0) continue;
    const std::int64_t b = r / (static_cast<std::int64_t>(seq) * heads), h = r % heads;
    const std::int64_t s = r / heads % seq;
    delta[(b * heads + h) * seq + s] = sum;
  }
}

// Pointers to row 0 of one head: row s lies s · stride elements further.
struct Head {
  std::int64_t qk_stride, v_stride, qk_offset, v_offset, row_offset;  // row_offset: into [B, H, S]
  const std::int32_t* documents;
};
__device__ __forceinline__ Head head_of(const Problem& p, int b, int h) {
  Head head;
  head.qk_stride = static_cast<std::int64_t>(p.heads) * p.qk_dim;
  head.v_stride = static_cast<std::int64_t>(p.heads) * p.v_dim;
  const std::int64_t batch_rows = static_cast<std::int64_t>(b) * p.seq;
  head.qk_offset = batch_rows * head.qk_stride + static_cast<std::int64_t>(h) * p.qk_dim;
  head.v_offset = batch_rows * head.v_stride + static_cast<std::int64_t>(h) * p.v_dim;
  head.row_offset = (static_cast<std::int64_t>(b) * p.heads + h) * p.seq;
  head.documents = p.document_ids ? p.document_ids + batch_rows : nullptr;
  return head;
}

// Writes a warp's 16 rows × kMaxDim accumulators (times `factor`) to rows first_row + g, + 8 (those < seq) and
// columns < dim.
template <int kMaxDim, class T>
__device__ void store_rows(T* rows, std::int64_t stride, const float (*accumulators)[4], int first_row, int seq,
                           int dim, float factor) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int i = first_row + g + half * 8;
    if (i >= seq) continue;
#pragma unroll
    for (int block = 0; block < kMaxDim / 8; ++block) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int c = block * 8 + 2 * t + e;
        if (c < dim) rows[i * stride + c] = from_float<T>(accumulators[block][2 * half + e] * factor);
      }
    }
  }
}

template <class T, int kMaxQk, int kMaxV>
__global__ void __launch_bounds__(kThreads)
    key_gradients_kernel(T* dk, T* dv, const T* q, const T* k, const T* v, const T* dout, const float* lse,
                         const float* delta, Problem p) {
  extern __shared__ uint4 shared_memory[];
  const int qk_row = p.qk_row(), v_row = p.v_row();
  bfloat16* k_tile = reinterpret_cast<bfloat16*>(shared_memory);          // [kTile][qk_row]
  bfloat16* v_tile = k_tile + kTile * qk_row;                             // [kTile][v_row]
  bfloat16* q_tile = v_tile + kTile * v_row;                              // [kStep][qk_row]
  bfloat16* dout_tile = q_tile + kStep * qk_row;                          // [kStep][v_row]
  float* lse_tile = reinterpret_cast<float*>(dout_tile + kStep * v_row);  // [kStep], base-2 units
  float* delta_tile = lse_tile + kStep;                                   // [kStep]

  const int k0 = blockIdx.x * kTile;  // the first key tiles see the most queries: they start first
  const Head head = head_of(p, blockIdx.z, blockIdx.y);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  load_tile(k_tile, qk_row, k + head.qk_offset + k0 * head.qk_stride, head.qk_stride, p.seq - k0, kTile, p.qk_dim,
            p.qk_padded, p.vector_qk);
  load_tile(v_tile, v_row, v + head.v_offset + k0 * head.v_stride, head.v_stride, p.seq - k0, kTile, p.v_dim,
            p.v_padded, p.vector_v);
  const DocumentRange key_documents = document_range(head.documents, k0, kTile, p.seq);

  const int key = k0 + warp * 16 + g;  // this thread's keys: key (entries 0, 1) and key + 8 (entries 2, 3)
  float dk_acc[kMaxQk / 8][4] = {}, dv_acc[kMaxV / 8][4] = {};  // the warp's 16 keys × head dims
  for (int q0 = k0; q0 < p.seq; q0 += kStep) {                  // queries before k0 see none of the tile's keys
    const TileMask mask = classify(q0, kStep, k0, kTile, p.seq, head.documents != nullptr,
                                   document_range(head.documents, q0, kStep, p.seq), key_documents);
    if (mask == TileMask::hidden) continue;
    __syncthreads();  // every warp is done with the previous query step
    load_tile(q_tile, qk_row, q + head.qk_offset + q0 * head.qk_stride, head.qk_stride, p.seq - q0, kStep, p.qk_dim,
              p.qk_padded, p.vector_qk);
    if (threadIdx.x < kStep) {
      const int i = q0 + threadIdx.x;
      lse_tile[threadIdx.x] = i < p.seq ? lse[head.row_offset + i] * kLog2e : INFINITY;
      delta_tile[threadIdx.x] = i < p.seq ? delta[head.row_offset + i] : 0.0f;
    }
    wait_for_tiles();
    __syncthreads();  // q, lse, delta (and on the first step k, v) arrived
    // dout arrives while Pᵀ is computed.
    load_tile(dout_tile, v_row, dout + head.v_offset + q0 * head.v_stride, head.v_stride, p.seq - q0, kStep, p.v_dim,
              p.v_padded, p.vector_v);

    // sᵀ = k[warp's 16 keys] · q[32 queries]ᵀ, by 8-query block; then Pᵀ = exp2(sᵀ · scale_log2 − lse_log2).
    float s[kStep / 8][4] = {};
    tile_scores<kStep>(s, k_tile, q_tile, qk_row, warp * 16, p.qk_padded);
#pragma unroll
    for (int block = 0; block < kStep / 8; ++block) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = block * 8 + 2 * t + e % 2, j = key + e / 2 * 8;
        const bool shown = mask == TileMask::visible || visible(q0 + c, j, p.seq, head.documents);
        s[block][e] = shown ? exp2f(s[block][e] * p.scale_log2 - lse_tile[c]) : 0.0f;
      }
    }
    wait_for_tiles();
    __syncthreads();  // dout arrived

    // dv += Pᵀ · dout[queries]
    scores_times_tile<kStep, kMaxV>(dv_acc, s, dout_tile, v_row, p.v_padded);

    // dPᵀ = v[keys] · dout[queries]ᵀ; dSᵀ = Pᵀ ⊙ (dPᵀ − delta), into dp.
    float dp[kStep / 8][4] = {};
    tile_scores<kStep>(dp, v_tile, dout_tile, v_row, warp * 16, p.v_padded);
#pragma unroll
    for (int block = 0; block < kStep / 8; ++block) {
#pragma unroll
      for (int e = 0; e < 4; ++e) dp[block][e] = s[block][e] * (dp[block][e] - delta_tile[block * 8 + 2 * t + e % 2]);
    }

    // dk += dSᵀ · q[queries] (times the scale at the end)
    scores_times_tile<kStep, kMaxQk>(dk_acc, dp, q_tile, qk_row, p.qk_padded);
  }

  store_rows<kMaxQk>(dk + head.qk_offset, head.qk_stride, dk_acc, k0 + warp * 16, p.seq, p.qk_dim, p.scale);
  store_rows<kMaxV>(dv + head.v_offset, head.v_stride, dv_acc, k0 + warp * 16, p.seq, p.v_dim, 1.0f);
}

template <class T, int kMaxQk>
__global__ void __launch_bounds__(kThreads)
    query_gradients_kernel(T* dq, const T* q, const T* k, const T* v, const T* dout, const float* lse,
                           const float* delta, Problem p) {
  extern __shared__ uint4 shared_memory[];
  const int qk_row = p.qk_row(), v_row = p.v_row();
  bfloat16* q_tile = reinterpret_cast<bfloat16*>(shared_memory);  // [kTile][qk_row]
  bfloat16* k_tile = q_tile + kTile * qk_row;                     // [kTile][qk_row]
  bfloat16* dout_tile = k_tile + kTile * qk_row;                  // [kTile][v_row]
  bfloat16* v_tile = dout_tile + kTile * v_row;                   // [kTile][v_row]

  const int tiles = (p.seq + kTile - 1) / kTile;
  const int q0 = (tiles - 1 - static_cast<int>(blockIdx.x)) * kTile;  // the longest rows first
  const Head head = head_of(p, blockIdx.z, blockIdx.y);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  load_tile(q_tile, qk_row, q + head.qk_offset + q0 * head.qk_stride, head.qk_stride, p.seq - q0, kTile, p.qk_dim,
            p.qk_padded, p.vector_qk);
  load_tile(dout_tile, v_row, dout + head.v_offset + q0 * head.v_stride, head.v_stride, p.seq - q0, kTile, p.v_dim,
            p.v_padded, p.vector_v);
  const DocumentRange query_documents = document_range(head.documents, q0, kTile, p.seq);

  const int row = q0 + warp * 16 + g;  // this thread's rows: row (entries 0, 1) and row + 8 (entries 2, 3)
  float row_lse[2], row_delta[2];      // lse in base-2 units
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int i = row + half * 8;
    row_lse[half] = i < p.seq ? lse[head.row_offset + i] * kLog2e : INFINITY;
    row_delta[half] = i < p.seq ? delta[head.row_offset + i] : 0.0f;
  }
  float dq_acc[kMaxQk / 8][4] = {};  // the warp's 16 rows × kMaxQk

  const int key_end = min(q0 + kTile, p.seq);
  for (int k0 = 0; k0 < key_end; k0 += kTile) {
    const TileMask mask = classify(q0, kTile, k0, kTile, p.seq, head.documents != nullptr, query_documents,
                                   document_range(head.documents, k0, kTile, p.seq));
    if (mask == TileMask::hidden) continue;
    __syncthreads();  // every warp is done with the previous k and v tiles
    load_tile(k_tile, qk_row, k + head.qk_offset + k0 * head.qk_stride, head.qk_stride, p.seq - k0, kTile, p.qk_dim,
              p.qk_padded, p.vector_qk);
    wait_for_tiles();
    __syncthreads();  // k (and on the first tile q, dout) arrived
    // v arrives while P is computed.
    load_tile(v_tile, v_row, v + head.v_offset + k0 * head.v_stride, head.v_stride, p.seq - k0, kTile, p.v_dim,
              p.v_padded, p.vector_v);

    // s = q[warp's 16 rows] · k[64 keys]ᵀ; P = exp2(s · scale_log2 − lse_log2).
    float s[kTile / 8][4] = {};
    tile_scores<kTile>(s, q_tile, k_tile, qk_row, warp * 16, p.qk_padded);
#pragma unroll
    for (int block = 0; block < kTile / 8; ++block) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = row + e / 2 * 8, j = k0 + block * 8 + 2 * t + e % 2;
        const bool shown = mask == TileMask::visible || visible(i, j, p.seq, head.documents);
        s[block][e] = shown ? exp2f(s[block][e] * p.scale_log2 - row_lse[e / 2]) : 0.0f;
      }
    }
    wait_for_tiles();
    __syncthreads();  // v arrived

    // dP = dout[warp's rows] · v[keys]ᵀ; dS = P ⊙ (dP − delta), into dp.
    float dp[kTile / 8][4] = {};
    tile_scores<kTile>(dp, dout_tile, v_tile, v_row, warp * 16, p.v_padded);
#pragma unroll
    for (int block = 0; block < kTile / 8; ++block) {
#pragma unroll
      for (int e = 0; e < 4; ++e) dp[block][e] = s[block][e] * (dp[block][e] - row_delta[e / 2]);
    }

    // dq += dS · k[keys] (times the scale at the end)
    scores_times_tile<kTile, kMaxQk>(dq_acc, dp, k_tile, qk_row, p.qk_padded);
  }

  store_rows<kMaxQk>(dq + head.qk_offset, head.qk_stride, dq_acc, q0 + warp * 16, p.seq, p.qk_dim, p.scale);
}

}  // namespace

}  // namespace attention_kernels

void attention_backward(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k, const void* v,
                        const void* out, const float* lse, Float type, const AttentionShape& shape, void* stream) {
  using namespace attention_kernels;
  const char* op = "attention_backward";
  if (!check_shape(shape, op)) return;
  const Problem problem = make_problem(shape, vectorizable(q, shape.qk_dim) && vectorizable(k, shape.qk_dim),
                                       vectorizable(v, shape.v_dim) && vectorizable(dout, shape.v_dim));
  const cudaStream_t queue = as_stream(stream);
  const std::int64_t rows = shape.batch * shape.seq * shape.heads;
  float* delta = nullptr;  // [B, H, S]
  check_cuda(cudaMallocAsync(&delta, sizeof(float) * rows, queue), op, "cudaMallocAsync");

  const unsigned tiles = static_cast<unsigned>((shape.seq + kTile - 1) / kTile);
  const dim3 grid(tiles, static_cast<unsigned>(shape.heads), static_cast<unsigned>(shape.batch));
  const std::size_t key_bytes =
      sizeof(bfloat16) * (kTile + kStep) * (problem.qk_row() + problem.v_row()) + sizeof(float) * 2 * kStep;
  const std::size_t query_bytes = sizeof(bfloat16) * kTile * 2 * (problem.qk_row() + problem.v_row());
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int kDeltaThreads = 256;
    delta_kernel<<<grid_for(rows * 32, kDeltaThreads), kDeltaThreads, 0, queue>>>(
        delta, static_cast<const T*>(dout), static_cast<const T*>(out), static_cast<int>(shape.seq),
        static_cast<int>(shape.heads), static_cast<int>(shape.v_dim), rows);
    check_launch(op);
    with_head_dims(problem.qk_padded, problem.v_padded, [&](auto dims) {
      using Dims = decltype(dims);
      const auto key_kernel = key_gradients_kernel<T, Dims::qk, Dims::v>;
      allow_shared_memory(key_kernel, key_bytes, op);
      key_kernel<<<grid, kThreads, key_bytes, queue>>>(
          static_cast<T*>(dk), static_cast<T*>(dv), static_cast<const T*>(q), static_cast<const T*>(k),
          static_cast<const T*>(v), static_cast<const T*>(dout), lse, delta, problem);
      check_launch(op);
      const auto query_kernel = query_gradients_kernel<T, Dims::qk>;
      allow_shared_memory(query_kernel, query_bytes, op);
      query_kernel<<<grid, kThreads, query_bytes, queue>>>(static_cast<T*>(dq), static_cast<const T*>(q),
                                                           static_cast<const T*>(k), static_cast<const T*>(v),
                                                           static_cast<const T*>(dout), lse, delta, problem);
      check_launch(op);
    });
  });
  check_cuda(cudaFreeAsync(delta, queue), op, "cudaFreeAsync");
}

}  // namespace dsv3::cuda
