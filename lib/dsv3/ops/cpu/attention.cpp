// Flash attention on the CPU. The sequence is cut into query blocks × key blocks; BLAS computes each tile's
// products straight from the [B, S, H, D] tensors (rows of one head lie H·D apart, the leading dimension), so
// nothing is transposed or copied and no S×S matrix exists. Forward: an online softmax (running max and sum per
// query row) folds key block after key block into the output; only lse = max + log(sum) is kept. Backward:
// P = exp(scores − lse) is recomputed tile by tile.
//
// Precision: softmax statistics (max, sum, lse, delta) are kept in the compute type T, so in f32 for f32 inputs,
// as flash-attention does on GPUs; f64 runs entirely in f64.
#include "dsv3/ops/cpu/attention.hpp"

#include "dsv3/ops/cpu/blas.hpp"
#include "dsv3/ops/cpu/dispatch.hpp"
#include "dsv3/ops/cpu/vector_math.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace dsv3::ops::cpu {

namespace {

// Queries × keys per tile (square tiles). Long sequences: at the benchmark shape (S 2048, H 16, Dqk 192, Dv 128,
// causal, f32, 2 cores, AVX-512 OpenBLAS kernels) fwd+bwd measured 198 GFLOP/s at 192×192, 201 at 256×256, 184
// at 256×128, 181 at 128×128: larger tiles spread BLAS's packing of each block over more flops, and 192 wastes
// less than 256 on the half-masked diagonal tiles. Short sequences: the diagonal tiles dominate, and at S 256
// (the debug model's benchmark, B 4) 64×64 tiles compute 1.25× the causal pairs where 192×192 compute 1.6×;
// measured fwd+bwd on 2 threads 102 GFLOP/s at 64 against 78–97 at 192.
constexpr int kLongSequenceBlock = 192;
constexpr int kShortSequenceBlock = 64;
constexpr int kShortSequence = 512;

// Extents of one call; rows of one head are heads·dim elements apart in every [B, S, H, dim] tensor.
struct Extents {
  int batch, seq, heads, qk_dim, v_dim;

  int qk_stride() const { return heads * qk_dim; }
  int v_stride() const { return heads * v_dim; }
  // Element offset of row 0 of head h of batch b in a [B, S, H, dim] tensor.
  std::int64_t head_offset(std::int64_t b, int h, int dim) const {
    return (b * seq * heads + h) * static_cast<std::int64_t>(dim);
  }
  // Queries (and keys) per tile; also the leading dimension of the score tiles.
  int block() const { return seq <= kShortSequence ? kShortSequenceBlock : kLongSequenceBlock; }
};

// Queries [q0, q0 + qn) × keys [k0, k0 + kn).
struct Tile {
  int q0, qn, k0, kn;
};

// Whether query i may see key j.
bool visible(int i, int j, const std::int32_t* documents) {
  return j <= i && (documents == nullptr || documents[j] == documents[i]);
}

enum class TileMask { hidden, visible, partial };

// The mask of a whole tile from its corners and the range of document ids on either side: a tile whose query
// and key documents cannot meet is hidden, one inside a single document below the diagonal is fully visible.
// Valid for any ids; with ids sorted along the sequence (running EOS counts) it skips every cross-document tile.
TileMask classify(const Tile& tile, const std::int32_t* documents) {
  const int last_query = tile.q0 + tile.qn - 1;
  if (tile.k0 > last_query) return TileMask::hidden;
  const bool below_diagonal = tile.k0 + tile.kn - 1 <= tile.q0;
  if (documents == nullptr) return below_diagonal ? TileMask::visible : TileMask::partial;
  const auto [query_min, query_max] = std::minmax_element(documents + tile.q0, documents + tile.q0 + tile.qn);
  const auto [key_min, key_max] = std::minmax_element(documents + tile.k0, documents + tile.k0 + tile.kn);
  if (*query_max < *key_min || *key_max < *query_min) return TileMask::hidden;
  const bool one_document = *query_min == *query_max && *key_min == *key_max && *query_min == *key_min;
  return below_diagonal && one_document ? TileMask::visible : TileMask::partial;
}

// scores[i, j] = scale · q[q0 + i] · k[k0 + j] (ld extents.block()), −inf where the mask hides the pair.
// Returns false, computing nothing, when the mask hides the whole tile.
template <class T>
bool score_tile(T* scores, const T* q_head, const T* k_head, const Tile& tile, const Extents& extents, T scale,
                const std::int32_t* documents) {
  const TileMask mask = classify(tile, documents);
  if (mask == TileMask::hidden) return false;
  const int stride = extents.qk_stride();
  gemm(false, true, tile.qn, tile.kn, extents.qk_dim, scale, q_head + static_cast<std::int64_t>(tile.q0) * stride,
       stride, k_head + static_cast<std::int64_t>(tile.k0) * stride, stride, T{0}, scores, extents.block());
  if (mask == TileMask::partial) {
    for (int i = 0; i < tile.qn; ++i) {
      for (int j = 0; j < tile.kn; ++j) {
        if (!visible(tile.q0 + i, tile.k0 + j, documents)) {
          scores[i * extents.block() + j] = -std::numeric_limits<T>::infinity();
        }
      }
    }
  }
  return true;
}

// Folds one tile row of scores into its query row's running max and sum (the online softmax): the scores
// become exp(score − new max) in place and the row's output accumulator is rescaled to the new max.
template <class T>
void online_softmax_row(T* scores, int n, T& running_max, T& running_sum, T* accumulator, int v_dim) {
  T tile_max = -std::numeric_limits<T>::infinity();
  // A comparison, not std::max: GCC 12 vectorises this form of the reduction and leaves std::max's scalar.
#pragma omp simd reduction(max : tile_max)
  for (int j = 0; j < n; ++j) tile_max = scores[j] > tile_max ? scores[j] : tile_max;
  const T new_max = std::max(running_max, tile_max);
  // A row that has seen only hidden keys keeps max −inf; shifting by 0 then avoids −inf − (−inf) = NaN.
  const T shift = new_max == -std::numeric_limits<T>::infinity() ? T{0} : new_max;
  T tile_sum = 0;
#pragma omp simd reduction(+ : tile_sum)
  for (int j = 0; j < n; ++j) {
    scores[j] = vector_exp(scores[j] - shift);
    tile_sum += scores[j];
  }
  const T rescale = vector_exp(running_max - shift);
  running_max = new_max;
  running_sum = running_sum * rescale + tile_sum;
  if (rescale == T{1}) return;
#pragma omp simd
  for (int d = 0; d < v_dim; ++d) accumulator[d] *= rescale;
}

template <class T>
void forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
             const std::int32_t* document_ids, const Extents& e, T scale) {
  const int block = e.block();
  const int query_blocks = (e.seq + block - 1) / block;
  const std::int64_t heads_total = static_cast<std::int64_t>(e.batch) * e.heads;
  const int v_stride = e.v_stride();
#pragma omp parallel
  {
    std::vector<T> scores(block * block), accumulator(block * e.v_dim);
    std::vector<T> running_max(block), running_sum(block);
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t unit = 0; unit < query_blocks * heads_total; ++unit) {
      // Last query blocks first: under a causal mask they see the most keys, and dynamic scheduling balances
      // best when the large pieces go first.
      const int q0 = static_cast<int>(query_blocks - 1 - unit / heads_total) * block;
      const int qn = std::min(block, e.seq - q0);
      const std::int64_t b = unit % heads_total / e.heads;
      const int h = static_cast<int>(unit % e.heads);
      const T* q_head = q.data<T>() + e.head_offset(b, h, e.qk_dim);
      const T* k_head = k.data<T>() + e.head_offset(b, h, e.qk_dim);
      const T* v_head = v.data<T>() + e.head_offset(b, h, e.v_dim);
      const std::int32_t* documents = document_ids ? document_ids + b * e.seq : nullptr;

      std::fill_n(running_max.begin(), qn, -std::numeric_limits<T>::infinity());
      std::fill_n(running_sum.begin(), qn, T{0});
      std::fill_n(accumulator.begin(), qn * e.v_dim, T{0});
      for (int k0 = 0; k0 < q0 + qn; k0 += block) {  // keys after the block's last query are hidden
        const Tile tile{q0, qn, k0, std::min(block, e.seq - k0)};
        if (!score_tile(scores.data(), q_head, k_head, tile, e, scale, documents)) continue;
        for (int i = 0; i < qn; ++i) {
          online_softmax_row(scores.data() + i * block, tile.kn, running_max[i], running_sum[i],
                             accumulator.data() + i * e.v_dim, e.v_dim);
        }
        // accumulator += P · v[keys]
        gemm(false, false, qn, e.v_dim, tile.kn, T{1}, scores.data(), block,
             v_head + static_cast<std::int64_t>(k0) * v_stride, v_stride, T{1}, accumulator.data(), e.v_dim);
      }

      T* out_head = out.data<T>() + e.head_offset(b, h, e.v_dim);
      T* lse_head = lse.data<T>() + (b * e.heads + h) * e.seq;
      for (int i = 0; i < qn; ++i) {
        // Both masks show every query its own key, so sum > 0. A row that saw nothing would get output 0 and
        // lse +inf, so that backward's exp(score − lse) is 0 rather than NaN (flash-attention's convention).
        const T sum = running_sum[i];
        lse_head[q0 + i] = sum > 0 ? running_max[i] + std::log(sum) : std::numeric_limits<T>::infinity();
        const T inverse_sum = sum > 0 ? T{1} / sum : T{0};
        T* out_row = out_head + static_cast<std::int64_t>(q0 + i) * v_stride;
        const T* accumulator_row = accumulator.data() + i * e.v_dim;
        for (int d = 0; d < e.v_dim; ++d) out_row[d] = accumulator_row[d] * inverse_sum;
      }
    }
  }
}

template <class T>
void backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
              const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
              const std::int32_t* document_ids, const Extents& e, T scale) {
  const std::int64_t heads_total = static_cast<std::int64_t>(e.batch) * e.heads;
  const int qk_stride = e.qk_stride(), v_stride = e.v_stride();
  const int block = e.block();
#pragma omp parallel
  {
    std::vector<T> probs(block * block), dprobs(block * block);
    std::vector<T> dk_block(block * e.qk_dim), dv_block(block * e.v_dim), delta(e.seq);
    // One (batch, head) per thread: its rows of dq, dk and dv are written by that thread alone. Dynamic: a core
    // slowed by other work (shared machines) hands heads to the others instead of holding up the barrier.
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t bh = 0; bh < heads_total; ++bh) {
      const std::int64_t b = bh / e.heads;
      const int h = static_cast<int>(bh % e.heads);
      const T* q_head = q.data<T>() + e.head_offset(b, h, e.qk_dim);
      const T* k_head = k.data<T>() + e.head_offset(b, h, e.qk_dim);
      const T* v_head = v.data<T>() + e.head_offset(b, h, e.v_dim);
      const T* out_head = out.data<T>() + e.head_offset(b, h, e.v_dim);
      const T* dout_head = dout.data<T>() + e.head_offset(b, h, e.v_dim);
      T* dq_head = dq.data<T>() + e.head_offset(b, h, e.qk_dim);
      T* dk_head = dk.data<T>() + e.head_offset(b, h, e.qk_dim);
      T* dv_head = dv.data<T>() + e.head_offset(b, h, e.v_dim);
      const T* lse_head = lse.data<T>() + bh * e.seq;
      const std::int32_t* documents = document_ids ? document_ids + b * e.seq : nullptr;

      // delta_i = Σ_d dout[i, d] · out[i, d] = Σ_j P_ij · dP_ij, the softmax backward's per-row term.
      for (int i = 0; i < e.seq; ++i) {
        const T* dout_row = dout_head + static_cast<std::int64_t>(i) * v_stride;
        const T* out_row = out_head + static_cast<std::int64_t>(i) * v_stride;
        T sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int d = 0; d < e.v_dim; ++d) sum += dout_row[d] * out_row[d];
        delta[i] = sum;
        std::fill_n(dq_head + static_cast<std::int64_t>(i) * qk_stride, e.qk_dim, T{0});
      }

      for (int k0 = 0; k0 < e.seq; k0 += block) {
        const int kn = std::min(block, e.seq - k0);
        std::fill_n(dk_block.begin(), kn * e.qk_dim, T{0});
        std::fill_n(dv_block.begin(), kn * e.v_dim, T{0});
        // Queries before k0 cannot see the block: with square tiles, start at the query block that begins at k0.
        for (int q0 = k0; q0 < e.seq; q0 += block) {
          const Tile tile{q0, std::min(block, e.seq - q0), k0, kn};
          if (!score_tile(probs.data(), q_head, k_head, tile, e, scale, documents)) continue;
          const T* q_rows = q_head + static_cast<std::int64_t>(q0) * qk_stride;
          const T* dout_rows = dout_head + static_cast<std::int64_t>(q0) * v_stride;
          for (int i = 0; i < tile.qn; ++i) {
            T* row = probs.data() + i * block;
            const T row_lse = lse_head[q0 + i];
#pragma omp simd
            for (int j = 0; j < kn; ++j) row[j] = vector_exp(row[j] - row_lse);
          }
          // dv[keys] += Pᵀ · dout[queries]
          gemm(true, false, kn, e.v_dim, tile.qn, T{1}, probs.data(), block, dout_rows, v_stride, T{1},
               dv_block.data(), e.v_dim);
          // dP = dout[queries] · v[keys]ᵀ
          gemm(false, true, tile.qn, kn, e.v_dim, T{1}, dout_rows, v_stride,
               v_head + static_cast<std::int64_t>(k0) * v_stride, v_stride, T{0}, dprobs.data(), block);
          // dS = P ⊙ (dP − delta), in place of dP
          for (int i = 0; i < tile.qn; ++i) {
            const T* p_row = probs.data() + i * block;
            T* ds_row = dprobs.data() + i * block;
            const T row_delta = delta[q0 + i];
#pragma omp simd
            for (int j = 0; j < kn; ++j) ds_row[j] = p_row[j] * (ds_row[j] - row_delta);
          }
          // scores = scale · q·kᵀ: dk[keys] += scale · dSᵀ · q[queries], dq[queries] += scale · dS · k[keys]
          gemm(true, false, kn, e.qk_dim, tile.qn, scale, dprobs.data(), block, q_rows, qk_stride, T{1},
               dk_block.data(), e.qk_dim);
          gemm(false, false, tile.qn, e.qk_dim, kn, scale, dprobs.data(), block,
               k_head + static_cast<std::int64_t>(k0) * qk_stride, qk_stride, T{1},
               dq_head + static_cast<std::int64_t>(q0) * qk_stride, qk_stride);
        }
        for (int j = 0; j < kn; ++j) {
          std::copy_n(dk_block.data() + j * e.qk_dim, e.qk_dim,
                      dk_head + static_cast<std::int64_t>(k0 + j) * qk_stride);
          std::copy_n(dv_block.data() + j * e.v_dim, e.v_dim, dv_head + static_cast<std::int64_t>(k0 + j) * v_stride);
        }
      }
    }
  }
}

Extents extents_of(const Tensor& q, const Tensor& v) {
  return {static_cast<int>(q.size(0)), static_cast<int>(q.size(1)), static_cast<int>(q.size(2)),
          static_cast<int>(q.size(3)), static_cast<int>(v.size(3))};
}

const std::int32_t* documents_of(const Tensor& document_ids, const AttentionOptions& options) {
  return options.mask == AttentionMask::document_causal ? document_ids.data<std::int32_t>() : nullptr;
}

}  // namespace

void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& document_ids, const AttentionOptions& options) {
  use_serial_blas();  // the kernels parallelise over tiles and call BLAS inside their region
  with_float_type(q.dtype(), "attention_forward", [&]<class T>() {
    forward<T>(out, lse, q, k, v, documents_of(document_ids, options), extents_of(q, v),
               static_cast<T>(options.scale));
  });
}

void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& document_ids, const AttentionOptions& options) {
  use_serial_blas();
  with_float_type(q.dtype(), "attention_backward", [&]<class T>() {
    backward<T>(dq, dk, dv, dout, q, k, v, out, lse, documents_of(document_ids, options), extents_of(q, v),
                static_cast<T>(options.scale));
  });
}

}  // namespace dsv3::ops::cpu
