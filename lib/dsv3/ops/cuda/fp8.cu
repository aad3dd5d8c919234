#include "dsv3/ops/cuda/fp8.hpp"

#include "dsv3/core/dtype.hpp"
#include "dsv3/ops/cuda/common.cuh"

#include <cuda_fp8.h>

namespace dsv3::cuda {

namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 1u << 16;

// The quantisation blocks of x, row-major over scale_inv's grid.
struct BlockGrid {
  std::int64_t rows, cols, block_rows, block_cols, grid_cols, blocks;
};

// One CUDA block per quantisation block (grid-stride over blocks). Element e of a block of h×w elements is at
// (row_begin + e/w, col_begin + e%w): consecutive threads read consecutive columns. first_bad: the smallest key
// block·block_rows·block_cols + (row − row_begin)·block_cols + (col − col_begin) of a non-finite element, which
// orders them by block, then row-major inside the block.
__global__ void fp8_quantize_kernel(std::uint8_t* q, float* scale_inv, const float* x, BlockGrid grid,
                                    unsigned long long* first_bad) {
  __shared__ float scratch[32];
  for (std::int64_t block = blockIdx.x; block < grid.blocks; block += gridDim.x) {
    const std::int64_t row_begin = block / grid.grid_cols * grid.block_rows;
    const std::int64_t col_begin = block % grid.grid_cols * grid.block_cols;
    const std::int64_t height = std::min(grid.block_rows, grid.rows - row_begin);
    const std::int64_t width = std::min(grid.block_cols, grid.cols - col_begin);
    const std::int64_t elements = height * width;
    float amax = 0.0f;
    bool finite = true;
    for (std::int64_t e = threadIdx.x; e < elements; e += blockDim.x) {
      const std::int64_t row = e / width, col = e - row * width;
      const float value = x[(row_begin + row) * grid.cols + col_begin + col];
      if (isfinite(value)) {
        amax = fmaxf(amax, fabsf(value));
      } else if (finite) {  // this thread's first non-finite element is its smallest key
        finite = false;
        const std::int64_t key = block * grid.block_rows * grid.block_cols + row * grid.block_cols + col;
        atomicMin(first_bad, static_cast<unsigned long long>(key));
      }
    }
    // Every thread reaches both barriers: the loop over blocks is uniform across the block.
    if (__syncthreads_or(!finite)) continue;  // left unwritten, like the CPU
    amax = block_max(amax, scratch);
    float scale = amax / kFp8E4m3Max;
    if (scale == 0.0f) scale = 1.0f;  // an all-zero block (or amax/448 underflowing): codes 0, dequantised 0
    if (threadIdx.x == 0) scale_inv[block] = scale;
    for (std::int64_t e = threadIdx.x; e < elements; e += blockDim.x) {
      const std::int64_t row = e / width, col = e - row * width;
      const std::int64_t index = (row_begin + row) * grid.cols + col_begin + col;
      q[index] = __nv_cvt_float_to_fp8(x[index] / scale, __NV_SATFINITE, __NV_E4M3);
    }
  }
}

__global__ void fp8_dequantize_kernel(float* x, const std::uint8_t* q, const float* scale_inv, BlockGrid grid) {
  const std::int64_t n = grid.rows * grid.cols;
  for (std::int64_t i = first_index(); i < n; i += index_stride()) {
    const std::int64_t row = i / grid.cols, col = i - row * grid.cols;
    const float scale = scale_inv[row / grid.block_rows * grid.grid_cols + col / grid.block_cols];
    const __half_raw decoded = __nv_cvt_fp8_to_halfraw(q[i], __NV_E4M3);  // exact: every e4m3 value is a half
    x[i] = __half2float(__half(decoded)) * scale;
  }
}

BlockGrid block_grid(std::int64_t rows, std::int64_t cols, std::int64_t block_rows, std::int64_t block_cols) {
  const std::int64_t grid_rows = (rows + block_rows - 1) / block_rows;
  const std::int64_t grid_cols = (cols + block_cols - 1) / block_cols;
  return {rows, cols, block_rows, block_cols, grid_cols, grid_rows * grid_cols};
}

}  // namespace

NonFinite fp8_quantize(void* q, float* scale_inv, const float* x, std::int64_t rows, std::int64_t cols,
                       std::int64_t block_rows, std::int64_t block_cols, void* stream) {
  const char* op = "fp8_quantize";
  const BlockGrid grid = block_grid(rows, cols, block_rows, block_cols);
  if (grid.blocks == 0) return {};
  StreamBuffer<unsigned long long> first_bad(1, stream, op);
  constexpr unsigned long long kNone = ~0ull;
  first_bad.set(kNone);
  // One thread per element of the largest block up to kThreads: a 1×128 tile gets 128.
  const int threads = threads_for(std::min(block_rows, rows) * std::min(block_cols, cols), kThreads);
  const unsigned blocks = static_cast<unsigned>(std::min<std::int64_t>(grid.blocks, kMaxBlocks));
  fp8_quantize_kernel<<<blocks, threads, 0, as_stream(stream)>>>(static_cast<std::uint8_t*>(q), scale_inv, x, grid,
                                                                 first_bad.get());
  check_launch(op);
  const unsigned long long key = first_bad.read();
  if (key == kNone) return {};
  const auto bad = static_cast<std::int64_t>(key);
  const std::int64_t block = bad / (block_rows * block_cols);
  const std::int64_t inside = bad % (block_rows * block_cols);
  NonFinite result;
  result.found = true;
  result.block_row = block / grid.grid_cols;
  result.block_col = block % grid.grid_cols;
  result.row = result.block_row * block_rows + inside / block_cols;
  result.col = result.block_col * block_cols + inside % block_cols;
  result.value = read_element(x + result.row * cols + result.col, stream, op);
  return result;
}

void fp8_dequantize(float* x, const void* q, const float* scale_inv, std::int64_t rows, std::int64_t cols,
                    std::int64_t block_rows, std::int64_t block_cols, void* stream) {
  const std::int64_t n = rows * cols;
  if (n == 0) return;
  fp8_dequantize_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(
      x, static_cast<const std::uint8_t*>(q), scale_inv, block_grid(rows, cols, block_rows, block_cols));
  check_launch("fp8_dequantize");
}

}  // namespace dsv3::cuda
