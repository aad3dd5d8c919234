// What the attention forward and backward kernels share: tile sizes, the bf16 tensor-core product
// (mma.sync m16n8k16) and its operand loads (ldmatrix), tile loads into shared memory, and the mask.
//
// Fragment layouts of mma.m16n8k16 (PTX ISA, "Matrix Fragments for mma.m16n8k16"), lane = 4·g + t:
//   A 16×16 (row-major): 4 registers of 2 bf16, (row g, cols 2t, 2t+1), (row g+8, same), (row g, cols 2t+8, 2t+9),
//     (row g+8, same); the lower half of a register holds the lower column.
//   B 16×8 (k × n): 2 registers, (k 2t, 2t+1; n g) and (k 2t+8, 2t+9; n g).
//   C 16×8 f32: c0, c1 at (row g, cols 2t, 2t+1), c2, c3 at (row g+8, same).
// So the C fragments of two adjacent 8-column blocks are, rounded to bf16, the A fragment of one 16-wide k step:
// that is how P and dS go from one product into the next without shared memory.
#pragma once

#include "dsv3/ops/cuda/attention.hpp"
#include "dsv3/ops/cuda/common.cuh"

#include <climits>
#include <cstdint>
#include <type_traits>

namespace dsv3::cuda::attention_kernels {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
// Rows per tile: queries per CTA in the forward and dq kernels and keys per step there; keys per CTA in the dk/dv
// kernel. Each warp owns 16 of them (one mma row block).
constexpr int kTile = kWarps * 16;
// Queries per step of the dk/dv kernel: a warp holds 16 keys × (Dqk + Dv) accumulators, so a full 64-query step
// (S and dP, 64 more registers) would spill at Dqk 192, Dv 128.
constexpr int kKeyKernelQueryStep = 32;
// bf16 elements added to each shared-memory row: rows 16 bytes apart modulo 128 bytes, so the 8 row addresses of
// one ldmatrix 8×8 matrix hit different banks.
constexpr int kRowPad = 8;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Everything a kernel needs besides the tensors. Head dims padded to a multiple of 16 (the mma k step) are the
// widths of the shared-memory tiles; the padding is zero.
struct Problem {
  int seq, heads, qk_dim, v_dim, qk_padded, v_padded;
  float scale;                       // multiplies q·k
  float scale_log2;                  // scale · log2(e): scores in base-2 units for exp2f
  const std::int32_t* document_ids;  // [B, S] or nullptr (causal)
  bool vector_qk, vector_v;          // tile rows of q/k (v/dout) may be loaded 8 elements at a time

  __host__ __device__ int qk_row() const { return qk_padded + kRowPad; }  // shared-memory row strides in elements
  __host__ __device__ int v_row() const { return v_padded + kRowPad; }
};

// The padded head dims a kernel instantiation holds in registers; the runtime dims are ≤ these.
template <int kQk, int kV>
struct HeadDims {
  static constexpr int qk = kQk, v = kV;
};
// Calls launch(HeadDims<…>{}) with the smallest instantiated dims that hold the padded head dims.
template <class Launch>
void with_head_dims(int qk_padded, int v_padded, Launch&& launch) {
  if (qk_padded <= 64 && v_padded <= 64) {
    launch(HeadDims<64, 64>{});
  } else if (qk_padded <= 128 && v_padded <= 128) {
    launch(HeadDims<128, 128>{});
  } else if (qk_padded <= 192 && v_padded <= 128) {
    launch(HeadDims<192, 128>{});  // MLA
  } else {
    launch(HeadDims<256, 256>{});
  }
}

inline int padded_dim(std::int64_t dim) { return static_cast<int>((dim + 15) / 16 * 16); }
// Whether rows of `dim` elements starting at `pointer` (and every head and row after it) may be read 8 at a time.
inline bool vectorizable(const void* pointer, std::int64_t dim) {
  return dim % 8 == 0 && reinterpret_cast<std::uintptr_t>(pointer) % 16 == 0;
}

inline Problem make_problem(const AttentionShape& shape, bool vector_qk, bool vector_v) {
  Problem problem{};
  problem.seq = static_cast<int>(shape.seq);
  problem.heads = static_cast<int>(shape.heads);
  problem.qk_dim = static_cast<int>(shape.qk_dim);
  problem.v_dim = static_cast<int>(shape.v_dim);
  problem.qk_padded = padded_dim(shape.qk_dim);
  problem.v_padded = padded_dim(shape.v_dim);
  problem.scale = static_cast<float>(shape.scale);
  problem.scale_log2 = static_cast<float>(shape.scale * 1.4426950408889634);
  problem.document_ids = shape.document_ids;
  problem.vector_qk = vector_qk;
  problem.vector_v = vector_v;
  return problem;
}

// Checks what the kernels assume of the shape (the dispatch checked the tensors). Returns false when there is
// nothing to compute.
bool check_shape(const AttentionShape& shape, const char* op);

__device__ __forceinline__ std::uint32_t shared_address(const void* pointer) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(pointer));
}

// Four 8×8 bf16 matrices; lanes 8m … 8m+7 give the row addresses of matrix m, whose fragment (row g,
// cols 2t, 2t+1) lands in fragment[m].
__device__ __forceinline__ void load_matrices(std::uint32_t fragment[4], const bfloat16* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(fragment[0]), "=r"(fragment[1]), "=r"(fragment[2]), "=r"(fragment[3])
               : "r"(shared_address(row)));
}
// The same with each matrix transposed: lane gets (rows 2t, 2t+1; col g) of the stored matrix.
__device__ __forceinline__ void load_matrices_transposed(std::uint32_t fragment[4], const bfloat16* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(fragment[0]), "=r"(fragment[1]), "=r"(fragment[2]), "=r"(fragment[3])
               : "r"(shared_address(row)));
}

// The A fragment of rows [row0, row0 + 16) × cols [col0, col0 + 16) of a row-major tile. Matrices: (rows 0–7,
// cols 0–7), (rows 8–15, cols 0–7), (rows 0–7, cols 8–15), (rows 8–15, cols 8–15): A's register order.
__device__ __forceinline__ void load_a(std::uint32_t a[4], const bfloat16* tile, int stride, int row0, int col0) {
  const int lane = threadIdx.x % 32;
  load_matrices(a, tile + (row0 + lane % 16) * stride + col0 + lane / 16 * 8);
}
// B fragments for B = tileᵀ, i.e. B[k][n] = tile[n][k] (a tile stored n-major, like k in q·kᵀ): n blocks
// [n0, n0 + 8) in b[0], b[1] and [n0 + 8, n0 + 16) in b[2], b[3], k [k0, k0 + 16). Matrices: (n 0–7, k 0–7),
// (n 0–7, k 8–15), (n 8–15, k 0–7), (n 8–15, k 8–15).
__device__ __forceinline__ void load_b_from_rows(std::uint32_t b[4], const bfloat16* tile, int stride, int n0, int k0) {
  const int lane = threadIdx.x % 32;
  load_matrices(b, tile + (n0 + lane % 8 + lane / 16 * 8) * stride + k0 + lane / 8 % 2 * 8);
}
// B fragments for B = tile (stored k-major, like v in P·v): k [k0, k0 + 16), n blocks [n0, n0 + 8) in b[0], b[1]
// and [n0 + 8, n0 + 16) in b[2], b[3]. Matrices (transposed on load): (k 0–7, n 0–7), (k 8–15, n 0–7),
// (k 0–7, n 8–15), (k 8–15, n 8–15).
__device__ __forceinline__ void load_b_from_columns(std::uint32_t b[4], const bfloat16* tile, int stride, int k0,
                                                    int n0) {
  const int lane = threadIdx.x % 32;
  load_matrices_transposed(b, tile + (k0 + lane % 16) * stride + n0 + lane / 16 * 8);
}

// c += a · b on the tensor cores: one 16×8×16 product, bf16 operands, fp32 accumulators.
__device__ __forceinline__ void mma(float c[4], const std::uint32_t a[4], std::uint32_t b0, std::uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// s[b] = rows_tile[warp's 16 rows from row0] · columns_tile[8·b .. 8·b + 8)ᵀ over the first `depth` columns of
// both (a multiple of 16), for kColumns rows of columns_tile: the scores of a q tile against a k tile (or the
// transposed scores, k against q), and dP of dout against v (or transposed). Both tiles row-major with `stride`
// elements per row.
template <int kColumns>
__device__ __forceinline__ void tile_scores(float (&s)[kColumns / 8][4], const bfloat16* rows_tile,
                                            const bfloat16* columns_tile, int stride, int row0, int depth) {
  for (int step = 0; step < depth / 16; ++step) {
    std::uint32_t a[4];
    load_a(a, rows_tile, stride, row0, step * 16);
#pragma unroll
    for (int pair = 0; pair < kColumns / 16; ++pair) {
      std::uint32_t b[4];
      load_b_from_rows(b, columns_tile, stride, pair * 16, step * 16);
      mma(s[2 * pair], a, b[0], b[1]);
      mma(s[2 * pair + 1], a, b[2], b[3]);
    }
  }
}

// Two floats as one register of bf16 (low half: `low`, the lower column).
__device__ __forceinline__ std::uint32_t pack_bf16(float low, float high) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(low, high);
  return *reinterpret_cast<const std::uint32_t*>(&pair);
}
// The A fragment of k step `step` from C fragments c[2·step] (cols 0–7) and c[2·step + 1] (cols 8–15).
__device__ __forceinline__ void accumulators_as_a(std::uint32_t a[4], const float (*c)[4], int step) {
  a[0] = pack_bf16(c[2 * step][0], c[2 * step][1]);
  a[1] = pack_bf16(c[2 * step][2], c[2 * step][3]);
  a[2] = pack_bf16(c[2 * step + 1][0], c[2 * step + 1][1]);
  a[3] = pack_bf16(c[2 * step + 1][2], c[2 * step + 1][3]);
}

// acc[b] += A · tile[.., 8·b .. 8·b + 8) for the first `padded_columns` columns (a multiple of 16), where A is the
// warp's 16 × kDepth scores in their accumulators (rounded to bf16) and tile is row-major [kDepth rows, columns]:
// P·v, Pᵀ·dout, dS·k and dSᵀ·q.
template <int kDepth, int kMaxColumns>
__device__ __forceinline__ void scores_times_tile(float (&acc)[kMaxColumns / 8][4], const float (&scores)[kDepth / 8][4],
                                                  const bfloat16* tile, int stride, int padded_columns) {
#pragma unroll
  for (int step = 0; step < kDepth / 16; ++step) {
    std::uint32_t a[4];
    accumulators_as_a(a, scores, step);
#pragma unroll
    for (int pair = 0; pair < kMaxColumns / 16; ++pair) {
      if (pair * 16 >= padded_columns) break;
      std::uint32_t b[4];
      load_b_from_columns(b, tile, stride, step * 16, pair * 16);
      mma(acc[2 * pair], a, b[0], b[1]);
      mma(acc[2 * pair + 1], a, b[2], b[3]);
    }
  }
}

// Eight consecutive elements as bf16.
__device__ __forceinline__ uint4 load8(const bfloat16* p) { return *reinterpret_cast<const uint4*>(p); }
__device__ __forceinline__ uint4 load8(const float* p) {
  const float4 low = reinterpret_cast<const float4*>(p)[0], high = reinterpret_cast<const float4*>(p)[1];
  return uint4{pack_bf16(low.x, low.y), pack_bf16(low.z, low.w), pack_bf16(high.x, high.y), pack_bf16(high.z, high.w)};
}

// 16 bytes global → shared without passing through registers (cp.async, sm_80+); `valid` false writes zeros.
// Completes at wait_for_tiles().
__device__ __forceinline__ void copy16_async(void* shared, const void* global, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(shared)), "l"(global),
               "r"(valid ? 16 : 0));
}
// Waits for this thread's cp.async copies; a __syncthreads() after it publishes every thread's tiles.
__device__ __forceinline__ void wait_for_tiles() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

// tile[r][c] = rows[r · row_stride + c] as bf16 for r < valid_rows, c < dim; 0 elsewhere in
// [0, tile_rows) × [0, padded_dim). `vectorized`: dim % 8 == 0 and `rows` 16-byte aligned. All threads of the
// CTA take part. bf16 rows that can be read 8 at a time are copied asynchronously, the rest converted through
// registers; either way the tile is complete after wait_for_tiles() and a __syncthreads().
template <class T>
__device__ void load_tile(bfloat16* tile, int tile_stride, const T* rows, std::int64_t row_stride, int valid_rows,
                          int tile_rows, int dim, int padded_dim, bool vectorized) {
  const int chunks = padded_dim / 8;
  for (int index = threadIdx.x; index < tile_rows * chunks; index += blockDim.x) {
    const int r = index / chunks, c = index % chunks * 8;
    const bool valid = r < valid_rows && c < dim;
    bfloat16* destination = tile + r * tile_stride + c;
    if constexpr (std::is_same_v<T, bfloat16>) {
      if (vectorized) {  // a chunk is either all inside the row or all padding
        copy16_async(destination, valid ? rows + r * row_stride + c : rows, valid);
        continue;
      }
    }
    uint4 packed;
    if (valid && vectorized) {
      packed = load8(rows + r * row_stride + c);
    } else {
      float x[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) x[e] = valid && c + e < dim ? to_float(rows[r * row_stride + c + e]) : 0.0f;
      packed = uint4{pack_bf16(x[0], x[1]), pack_bf16(x[2], x[3]), pack_bf16(x[4], x[5]), pack_bf16(x[6], x[7])};
    }
    *reinterpret_cast<uint4*>(destination) = packed;
  }
}

// Whether query i sees key j: causal, a real query (i < seq, hence j < seq), and the same document if any.
__device__ __forceinline__ bool visible(int i, int j, int seq, const std::int32_t* documents) {
  return j <= i && i < seq && (documents == nullptr || documents[i] == documents[j]);
}

struct DocumentRange {
  int low = INT_MIN, high = INT_MAX;  // without documents: a range that meets every other
  __device__ bool one_document() const { return low == high; }
};
// The smallest and largest document id in positions [first, first + count) ∩ [0, seq), computed by each warp
// on its own (no barrier; every warp gets the same answer). An empty range (low > high) meets nothing.
__device__ __forceinline__ DocumentRange document_range(const std::int32_t* documents, int first, int count, int seq) {
  if (documents == nullptr) return {};
  int low = INT_MAX, high = INT_MIN;
  for (int p = first + threadIdx.x % 32; p < first + count && p < seq; p += 32) {
    low = min(low, documents[p]);
    high = max(high, documents[p]);
  }
  return {__reduce_min_sync(0xffffffffu, low), __reduce_max_sync(0xffffffffu, high)};
}

enum class TileMask { hidden, visible, partial };

// The mask of queries [q0, q0 + rows) × keys [k0, k0 + columns) (tiles may run past seq; k0 < seq). Hidden:
// every key after every real query, or the documents cannot meet. Visible: below the diagonal, every query
// real and one document throughout, so no element needs its mask. Uniform over the CTA.
__device__ __forceinline__ TileMask classify(int q0, int rows, int k0, int columns, int seq, bool documents,
                                             const DocumentRange& queries, const DocumentRange& keys) {
  if (k0 > min(q0 + rows, seq) - 1 || keys.high < queries.low || queries.high < keys.low) return TileMask::hidden;
  const bool same_document = queries.one_document() && keys.one_document() && queries.low == keys.low;
  return k0 + columns - 1 <= q0 && q0 + rows <= seq && (!documents || same_document) ? TileMask::visible
                                                                                     : TileMask::partial;
}

// Dynamic shared memory above the default 48 KB must be opted into per kernel.
template <class Kernel>
void allow_shared_memory(Kernel kernel, std::size_t bytes, const char* op) {
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)), op,
             "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)");
}

}  // namespace dsv3::cuda::attention_kernels
