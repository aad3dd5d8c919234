#include "dsv3/ops/cuda/norm.hpp"

#include "dsv3/ops/cuda/common.cuh"

namespace dsv3::cuda {

namespace {

// One block per row (grid-stride over rows) of up to 256 threads: D is up to 7168, so each takes a few packs.
constexpr int kRowThreads = 256;
constexpr unsigned kMaxRowBlocks = 1u << 16;

// dw partial sums: a block covers kColumns columns of kRowsPerChunk rows, its kRowLanes warps taking every
// kRowLanes-th row (a warp reads 32 consecutive columns of one row: coalesced).
constexpr int kColumns = 32;
constexpr int kRowLanes = 8;
constexpr std::int64_t kRowsPerChunk = 256;

template <class T, int N>
__device__ __forceinline__ Pack<T, N> load_pack(const T* row, std::int64_t pack) {
  return reinterpret_cast<const Pack<T, N>*>(row)[pack];
}

// rstd = 1/sqrt(mean(x²) + eps) (squares summed in fp32 per thread, then a tree over the block); y = x·rstd·w
// with the rstd as stored, like the CPU. N: the pack width (dim is a multiple of it).
template <class T, int N>
__global__ void rmsnorm_forward_kernel(T* y, float* rstd, const T* x, const T* w, std::int64_t rows, std::int64_t dim,
                                       double eps) {
  __shared__ float scratch[32];
  const std::int64_t packs = dim / N;
  for (std::int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* x_row = x + row * dim;
    float sum_squares = 0.0f;
    for (std::int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      const Pack<T, N> xp = load_pack<T, N>(x_row, p);
#pragma unroll
      for (int k = 0; k < N; ++k) {
        const float value = to_float(xp.values[k]);
        sum_squares += value * value;
      }
    }
    sum_squares = block_sum(sum_squares, scratch);
    // One scalar per row: the mean, eps and the square root in double like the CPU, rounded once to fp32.
    const float r = static_cast<float>(1.0 / sqrt(static_cast<double>(sum_squares) / static_cast<double>(dim) + eps));
    if (threadIdx.x == 0) rstd[row] = r;
    T* y_row = y + row * dim;
    for (std::int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      const Pack<T, N> xp = load_pack<T, N>(x_row, p);
      const Pack<T, N> wp = load_pack<T, N>(w, p);
      Pack<T, N> yp;
#pragma unroll
      for (int k = 0; k < N; ++k) yp.values[k] = from_float<T>(to_float(xp.values[k]) * r * to_float(wp.values[k]));
      reinterpret_cast<Pack<T, N>*>(y_row)[p] = yp;
    }
  }
}

// dx_k = r·w_k·dy_k − (r³/D)·x_k·Σ_j dy_j·w_j·x_j, one block per row.
template <class T, int N>
__global__ void rmsnorm_backward_dx_kernel(T* dx, const T* dy, const T* x, const T* w, const float* rstd,
                                           std::int64_t rows, std::int64_t dim) {
  __shared__ float scratch[32];
  const std::int64_t packs = dim / N;
  for (std::int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* x_row = x + row * dim;
    const T* dy_row = dy + row * dim;
    float sum_dy_w_x = 0.0f;
    for (std::int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      const Pack<T, N> xp = load_pack<T, N>(x_row, p);
      const Pack<T, N> dyp = load_pack<T, N>(dy_row, p);
      const Pack<T, N> wp = load_pack<T, N>(w, p);
#pragma unroll
      for (int k = 0; k < N; ++k) {
        sum_dy_w_x += to_float(dyp.values[k]) * to_float(wp.values[k]) * to_float(xp.values[k]);
      }
    }
    sum_dy_w_x = block_sum(sum_dy_w_x, scratch);
    const float r = rstd[row];
    const double r_double = r;
    const float correction =
        static_cast<float>(static_cast<double>(sum_dy_w_x) * r_double * r_double * r_double / static_cast<double>(dim));
    T* dx_row = dx + row * dim;
    for (std::int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      const Pack<T, N> xp = load_pack<T, N>(x_row, p);
      const Pack<T, N> dyp = load_pack<T, N>(dy_row, p);
      const Pack<T, N> wp = load_pack<T, N>(w, p);
      Pack<T, N> dxp;
#pragma unroll
      for (int k = 0; k < N; ++k) {
        dxp.values[k] =
            from_float<T>(r * to_float(wp.values[k]) * to_float(dyp.values[k]) - correction * to_float(xp.values[k]));
      }
      reinterpret_cast<Pack<T, N>*>(dx_row)[p] = dxp;
    }
  }
}

// partial[chunk, j] = Σ over the chunk's rows of dy_j·x_j·r, in a fixed order: each thread sums its rows in
// order, then the kRowLanes lanes are added in lane order. blockIdx.x: a group of kColumns columns; blockIdx.y
// (grid-stride): the row chunk.
template <class T>
__global__ void rmsnorm_dw_partial_kernel(float* partial, const T* dy, const T* x, const float* rstd, std::int64_t rows,
                                          std::int64_t dim, std::int64_t chunks) {
  __shared__ float lane_sums[kRowLanes][kColumns];
  const std::int64_t col = std::int64_t{blockIdx.x} * kColumns + threadIdx.x;
  for (std::int64_t chunk = blockIdx.y; chunk < chunks; chunk += gridDim.y) {
    const std::int64_t row_end = std::min(rows, (chunk + 1) * kRowsPerChunk);
    float sum = 0.0f;
    if (col < dim) {
      for (std::int64_t row = chunk * kRowsPerChunk + threadIdx.y; row < row_end; row += kRowLanes) {
        sum += to_float(dy[row * dim + col]) * to_float(x[row * dim + col]) * rstd[row];
      }
    }
    lane_sums[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && col < dim) {
      float total = 0.0f;
#pragma unroll
      for (int lane = 0; lane < kRowLanes; ++lane) total += lane_sums[lane][threadIdx.x];
      partial[chunk * dim + col] = total;
    }
    __syncthreads();  // lane_sums is rewritten by the next chunk
  }
}

// dw_j += Σ_chunks partial[chunk, j], chunks in order, one rounding to T.
template <class T>
__global__ void rmsnorm_dw_reduce_kernel(T* dw, const float* partial, std::int64_t chunks, std::int64_t dim) {
  for (std::int64_t col = first_index(); col < dim; col += index_stride()) {
    float total = 0.0f;
    for (std::int64_t chunk = 0; chunk < chunks; ++chunk) total += partial[chunk * dim + col];
    dw[col] = from_float<T>(to_float(dw[col]) + total);
  }
}

unsigned row_blocks(std::int64_t rows) { return static_cast<unsigned>(std::min<std::int64_t>(rows, kMaxRowBlocks)); }

}  // namespace

void rmsnorm_forward(void* y, float* rstd, const void* x, const void* w, Float type, std::int64_t rows,
                     std::int64_t dim, double eps, void* stream) {
  if (rows == 0) return;
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    with_pack_width<T>(dim % kVector<T> == 0 && aligned16({y, x, w}), [&](auto width) {
      constexpr int N = decltype(width)::value;
      rmsnorm_forward_kernel<T, N><<<row_blocks(rows), threads_for(dim / N, kRowThreads), 0, as_stream(stream)>>>(
          static_cast<T*>(y), rstd, static_cast<const T*>(x), static_cast<const T*>(w), rows, dim, eps);
    });
  });
  check_launch("rmsnorm_forward");
}

void rmsnorm_backward(void* dx, void* dw, const void* dy, const void* x, const void* w, const float* rstd, Float type,
                      std::int64_t rows, std::int64_t dim, void* stream) {
  if (rows == 0) return;
  const char* op = "rmsnorm_backward";
  const std::int64_t chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  StreamBuffer<float> partial(chunks * dim, stream, op);  // [chunks, dim]
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    with_pack_width<T>(dim % kVector<T> == 0 && aligned16({dx, dy, x, w}), [&](auto width) {
      constexpr int N = decltype(width)::value;
      rmsnorm_backward_dx_kernel<T, N><<<row_blocks(rows), threads_for(dim / N, kRowThreads), 0, as_stream(stream)>>>(
          static_cast<T*>(dx), static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(w), rstd,
          rows, dim);
    });
    check_launch(op);
    const dim3 grid(static_cast<unsigned>((dim + kColumns - 1) / kColumns),
                    static_cast<unsigned>(std::min<std::int64_t>(chunks, 65535)));
    rmsnorm_dw_partial_kernel<<<grid, dim3(kColumns, kRowLanes), 0, as_stream(stream)>>>(
        partial.get(), static_cast<const T*>(dy), static_cast<const T*>(x), rstd, rows, dim, chunks);
    check_launch(op);
    rmsnorm_dw_reduce_kernel<<<grid_for(dim, kRowThreads), kRowThreads, 0, as_stream(stream)>>>(
        static_cast<T*>(dw), partial.get(), chunks, dim);
  });
  check_launch(op);
}

}  // namespace dsv3::cuda
