// Flash attention forward on CUDA (FlashAttention-2): one CTA of 4 warps per (query tile of 64 rows, head,
// batch); each warp owns 16 query rows. The CTA walks the key tiles of 64 keys up to its diagonal, skipping tiles
// the mask hides; per tile each warp computes its 16×64 scores S = q·kᵀ on the tensor cores, folds them into the
// running row max and sum (online softmax in base 2, fp32) and accumulates P·v into registers. Only
// lse = max + log(sum) is kept for the backward.
//
// Shared memory: the q tile [64][Dqk+8], then k [64][Dqk+8] and v [64][Dv+8], bf16; 68.6 KB at Dqk 192, Dv 128.
#include "dsv3/ops/cuda/attention.cuh"

namespace dsv3::cuda {

namespace attention_kernels {

bool check_shape(const AttentionShape& shape, const char* op) {
  DSV3_CHECK(shape.qk_dim >= 1 && shape.qk_dim <= kAttentionMaxHeadDim && shape.v_dim >= 1 &&
                 shape.v_dim <= kAttentionMaxHeadDim,
             "{}: head dims qk {} and v {} not supported on CUDA (1 to {})", op, shape.qk_dim, shape.v_dim,
             kAttentionMaxHeadDim);
  // Positions are ints; heads and batch are grid dimensions y and z.
  DSV3_CHECK(shape.seq <= INT_MAX - kTile && shape.heads <= 65535 && shape.batch <= 65535,
             "{}: batch {}, seq {}, heads {} too large for the CUDA kernels' grid", op, shape.batch, shape.seq,
             shape.heads);
  return shape.batch > 0 && shape.seq > 0 && shape.heads > 0;
}

namespace {

template <class T, int kMaxV>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(T* out, float* lse, const T* q, const T* k, const T* v, Problem p) {
  extern __shared__ uint4 shared_memory[];
  const int qk_row = p.qk_row(), v_row = p.v_row();
  bfloat16* q_tile = reinterpret_cast<bfloat16*>(shared_memory);  // [kTile][qk_row]
  bfloat16* k_tile = q_tile + kTile * qk_row;                     // [kTile][qk_row]
  bfloat16* v_tile = k_tile + kTile * qk_row;                     // [kTile][v_row]

  const int tiles = (p.seq + kTile - 1) / kTile;
  const int q0 = (tiles - 1 - static_cast<int>(blockIdx.x)) * kTile;  // the longest rows first
  const int h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  // Rows of one head lie heads·dim elements apart; row s of head h of batch b starts at (b·S + s)·H·D + h·D.
  const std::int64_t qk_stride = static_cast<std::int64_t>(p.heads) * p.qk_dim;
  const std::int64_t v_stride = static_cast<std::int64_t>(p.heads) * p.v_dim;
  const std::int64_t batch_rows = static_cast<std::int64_t>(b) * p.seq;
  const T* q_head = q + batch_rows * qk_stride + static_cast<std::int64_t>(h) * p.qk_dim;
  const T* k_head = k + batch_rows * qk_stride + static_cast<std::int64_t>(h) * p.qk_dim;
  const T* v_head = v + batch_rows * v_stride + static_cast<std::int64_t>(h) * p.v_dim;
  const std::int32_t* documents = p.document_ids ? p.document_ids + batch_rows : nullptr;

  load_tile(q_tile, qk_row, q_head + q0 * qk_stride, qk_stride, p.seq - q0, kTile, p.qk_dim, p.qk_padded, p.vector_qk);
  const DocumentRange query_documents = document_range(documents, q0, kTile, p.seq);

  // This thread's rows: q0 + warp·16 + g (accumulator entries 0, 1) and that + 8 (entries 2, 3).
  const int row = q0 + warp * 16 + g;
  float o[kMaxV / 8][4] = {};                 // 16 rows × kMaxV output accumulators of the warp, by 8-column block
  float row_max[2] = {-INFINITY, -INFINITY};  // base-2 units
  float row_sum[2] = {0.0f, 0.0f};            // this thread's part; the 4 threads of a row add theirs at the end

  const int key_end = min(q0 + kTile, p.seq);  // keys after the tile's last query are hidden
  // The first key tile at or after `from` that the mask does not hide; key_end when none is left.
  const auto next_tile = [&](int from) {
    for (int first = from; first < key_end; first += kTile) {
      if (classify(q0, kTile, first, kTile, p.seq, documents != nullptr, query_documents,
                   document_range(documents, first, kTile, p.seq)) != TileMask::hidden) {
        return first;
      }
    }
    return key_end;
  };
  const auto load_keys = [&](int first) {
    load_tile(k_tile, qk_row, k_head + first * qk_stride, qk_stride, p.seq - first, kTile, p.qk_dim, p.qk_padded,
              p.vector_qk);
  };
  // The loads overlap the products (FlashAttention-2): v of a tile arrives while its scores are computed, k of
  // the next tile while P·v is. The diagonal tile is never hidden, so the loop runs at least once.
  int k0 = next_tile(0);
  if (k0 < key_end) load_keys(k0);
  while (k0 < key_end) {
    const TileMask mask = classify(q0, kTile, k0, kTile, p.seq, documents != nullptr, query_documents,
                                   document_range(documents, k0, kTile, p.seq));
    wait_for_tiles();
    __syncthreads();  // k (and q) arrived; every warp is done with the previous tile's v
    load_tile(v_tile, v_row, v_head + k0 * v_stride, v_stride, p.seq - k0, kTile, p.v_dim, p.v_padded, p.vector_v);

    // s = q[warp's 16 rows] · k[64 keys]ᵀ, by 8-key block.
    float s[kTile / 8][4] = {};
    tile_scores<kTile>(s, q_tile, k_tile, qk_row, warp * 16, p.qk_padded);

    // Scores in base-2 units, −inf where hidden; then the online softmax of each of the thread's two rows.
#pragma unroll
    for (int block = 0; block < kTile / 8; ++block) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = row + e / 2 * 8, j = k0 + block * 8 + 2 * t + e % 2;
        const bool shown = mask == TileMask::visible || visible(i, j, p.seq, documents);
        s[block][e] = shown ? s[block][e] * p.scale_log2 : -INFINITY;
      }
    }
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float tile_max = -INFINITY;
#pragma unroll
      for (int block = 0; block < kTile / 8; ++block) {
        tile_max = fmaxf(tile_max, fmaxf(s[block][2 * half], s[block][2 * half + 1]));
      }
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));  // the row's 4 threads
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
      const float new_max = fmaxf(row_max[half], tile_max);
      // A row that has seen only hidden keys keeps max −inf; shifting by 0 avoids −inf − (−inf) = NaN.
      const float shift = new_max == -INFINITY ? 0.0f : new_max;
      const float rescale = exp2f(row_max[half] - shift);
      row_max[half] = new_max;
      float tile_sum = 0.0f;
#pragma unroll
      for (int block = 0; block < kTile / 8; ++block) {
#pragma unroll
        for (int e = 2 * half; e < 2 * half + 2; ++e) {
          s[block][e] = exp2f(s[block][e] - shift);
          tile_sum += s[block][e];
        }
      }
      row_sum[half] = row_sum[half] * rescale + tile_sum;
#pragma unroll
      for (int block = 0; block < kMaxV / 8; ++block) {
        o[block][2 * half] *= rescale;
        o[block][2 * half + 1] *= rescale;
      }
    }

    wait_for_tiles();
    __syncthreads();  // v arrived; every warp is done with k
    const int next = next_tile(k0 + kTile);
    if (next < key_end) load_keys(next);

    // o += P · v: P (rounded to bf16) is the A operand straight from the score accumulators.
    scores_times_tile<kTile, kMaxV>(o, s, v_tile, v_row, p.v_padded);
    k0 = next;
  }

  T* out_head = out + batch_rows * v_stride + static_cast<std::int64_t>(h) * p.v_dim;
  float* lse_head = lse + (static_cast<std::int64_t>(b) * p.heads + h) * p.seq;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float sum = row_sum[half];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const int i = row + half * 8;
    if (i >= p.seq) continue;
    // Both masks show every query its own key, so sum > 0; a row that saw nothing gets output 0 and lse +inf,
    // so that the backward's exp(score − lse) is 0 (the CPU reference's convention).
    const float inverse_sum = sum > 0.0f ? 1.0f / sum : 0.0f;
    if (t == 0) lse_head[i] = sum > 0.0f ? row_max[half] * kLn2 + logf(sum) : INFINITY;
    T* out_row = out_head + i * v_stride;
#pragma unroll
    for (int block = 0; block < kMaxV / 8; ++block) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int c = block * 8 + 2 * t + e;
        if (c < p.v_dim) out_row[c] = from_float<T>(o[block][2 * half + e] * inverse_sum);
      }
    }
  }
}

}  // namespace

}  // namespace attention_kernels

void attention_forward(void* out, float* lse, const void* q, const void* k, const void* v, Float type,
                       const AttentionShape& shape, void* stream) {
  using namespace attention_kernels;
  const char* op = "attention_forward";
  if (!check_shape(shape, op)) return;
  const Problem problem =
      make_problem(shape, vectorizable(q, shape.qk_dim) && vectorizable(k, shape.qk_dim), vectorizable(v, shape.v_dim));
  const dim3 grid(static_cast<unsigned>((shape.seq + kTile - 1) / kTile), static_cast<unsigned>(shape.heads),
                  static_cast<unsigned>(shape.batch));
  const std::size_t shared_bytes = sizeof(bfloat16) * kTile * (2 * problem.qk_row() + problem.v_row());
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    with_head_dims(problem.qk_padded, problem.v_padded, [&](auto dims) {
      const auto kernel = forward_kernel<T, decltype(dims)::v>;
      allow_shared_memory(kernel, shared_bytes, op);
      kernel<<<grid, kThreads, shared_bytes, as_stream(stream)>>>(static_cast<T*>(out), lse, static_cast<const T*>(q),
                                                                  static_cast<const T*>(k), static_cast<const T*>(v),
                                                                  problem);
    });
  });
  check_launch(op);
}

}  // namespace dsv3::cuda
