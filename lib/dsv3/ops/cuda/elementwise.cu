#include "dsv3/ops/cuda/elementwise.hpp"

#include "dsv3/ops/cuda/checks.hpp"
#include "dsv3/ops/cuda/common.cuh"

#include <cuda_fp8.h>

namespace dsv3::cuda {

namespace {

constexpr int kThreads = 256;

using fp8 = __nv_fp8_e4m3;

__device__ __forceinline__ float load(const float* p, std::int64_t i) { return p[i]; }
__device__ __forceinline__ float load(const bfloat16* p, std::int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float load(const fp8* p, std::int64_t i) { return static_cast<float>(p[i]); }
__device__ __forceinline__ void store(float* p, std::int64_t i, float x) { p[i] = x; }
__device__ __forceinline__ void store(bfloat16* p, std::int64_t i, float x) { p[i] = __float2bfloat16_rn(x); }
// Round to nearest even, saturating at ±448 as the CPU reference does (NaN stays NaN).
__device__ __forceinline__ void store(fp8* p, std::int64_t i, float x) {
  p[i].__x = __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
}

template <class Function>
void with_storage(Storage type, Function&& function) {
  switch (type) {
    case Storage::f32: function(TypeTag<float>{}); return;
    case Storage::bf16: function(TypeTag<bfloat16>{}); return;
    case Storage::fp8_e4m3: function(TypeTag<fp8>{}); return;
  }
}

template <class To, class From>
__global__ void convert_float_kernel(To* dst, const From* src, std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += index_stride()) {
    store(dst, i, load(src, i));
  }
}

template <class To, class From>
__global__ void convert_index_kernel(To* dst, const From* src, std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += index_stride()) {
    dst[i] = static_cast<To>(src[i]);
  }
}

__global__ void round_to_bf16_kernel(float* y, const float* x, std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += index_stride()) {
    y[i] = __bfloat162float(__float2bfloat16_rn(x[i]));
  }
}

template <class T>
__global__ void fill_kernel(T* y, float value, std::int64_t n) {
  const T stored = from_float<T>(value);
  for (std::int64_t i = first_index(); i < n; i += index_stride()) y[i] = stored;
}

template <class T>
__global__ void add_kernel(T* y, const T* a, const T* b, std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += index_stride()) {
    y[i] = from_float<T>(to_float(a[i]) + to_float(b[i]));
  }
}

template <class T>
__global__ void axpy_kernel(T* y, float alpha, const T* x, std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += index_stride()) {
    y[i] = from_float<T>(fmaf(alpha, to_float(x[i]), to_float(y[i])));
  }
}

template <class T>
__global__ void scale_kernel(T* y, float alpha, std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += index_stride()) {
    y[i] = from_float<T>(alpha * to_float(y[i]));
  }
}

// One thread per element of dst's column range; summing over src's heads in fp32 when dst has one head.
template <class T>
__global__ void copy_head_columns_kernel(T* dst, const T* src, HeadColumns c) {
  const std::int64_t n = c.tokens * c.dst_heads * c.width;
  const bool sum_over_heads = c.dst_heads == 1 && c.src_heads > 1;
  for (std::int64_t i = first_index(); i < n; i += index_stride()) {
    const std::int64_t column = i % c.width, h = (i / c.width) % c.dst_heads, t = i / (c.width * c.dst_heads);
    T* out = dst + (t * c.dst_heads + h) * c.dst_row + c.dst_column + column;
    if (sum_over_heads) {
      float sum = 0.0f;
      for (std::int64_t g = 0; g < c.src_heads; ++g) {
        sum += to_float(src[(t * c.src_heads + g) * c.src_row + c.src_column + column]);
      }
      *out = from_float<T>(sum);
    } else {
      *out = src[(t * c.src_heads + (c.src_heads == 1 ? 0 : h)) * c.src_row + c.src_column + column];
    }
  }
}

}  // namespace

void synchronize(void* stream, const char* what) {
  check_cuda(cudaStreamSynchronize(as_stream(stream)), what, "cudaStreamSynchronize");
}

void convert_float(void* dst, Storage dst_type, const void* src, Storage src_type, std::int64_t n, void* stream) {
  if (n == 0) return;
  with_storage(dst_type, [&](auto to) {
    with_storage(src_type, [&](auto from) {
      using To = typename decltype(to)::type;
      using From = typename decltype(from)::type;
      convert_float_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(
          static_cast<To*>(dst), static_cast<const From*>(src), n);
    });
  });
  check_launch("convert");
}

void convert_index(void* dst, Index dst_type, const void* src, Index src_type, std::int64_t n, void* stream) {
  if (n == 0) return;
  if (dst_type == Index::i32 && src_type == Index::i64) {  // checked before anything is written
    const OutOfRange bad = find_out_of_range(src, Index::i64, n, INT32_MIN, std::int64_t{INT32_MAX} + 1, INT32_MIN,
                                             stream, "convert");
    DSV3_CHECK(bad.index < 0, "convert: element {} of the i64 source does not fit in i32", bad.index);
  }
  with_index(dst_type, [&](auto to) {
    with_index(src_type, [&](auto from) {
      using To = typename decltype(to)::type;
      using From = typename decltype(from)::type;
      convert_index_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(
          static_cast<To*>(dst), static_cast<const From*>(src), n);
    });
  });
  check_launch("convert");
}

void round_to_bf16(float* y, const float* x, std::int64_t n, void* stream) {
  if (n == 0) return;
  round_to_bf16_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(y, x, n);
  check_launch("round_to_bf16");
}

void fill(void* y, Float type, double value, std::int64_t n, void* stream) {
  if (n == 0) return;
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    fill_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(static_cast<T*>(y),
                                                                            static_cast<float>(value), n);
  });
  check_launch("fill");
}

void add(void* y, const void* a, const void* b, Float type, std::int64_t n, void* stream) {
  if (n == 0) return;
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    add_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(
        static_cast<T*>(y), static_cast<const T*>(a), static_cast<const T*>(b), n);
  });
  check_launch("add");
}

void axpy(void* y, double alpha, const void* x, Float type, std::int64_t n, void* stream) {
  if (n == 0) return;
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    axpy_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(
        static_cast<T*>(y), static_cast<float>(alpha), static_cast<const T*>(x), n);
  });
  check_launch("axpy");
}

void scale(void* y, double alpha, Float type, std::int64_t n, void* stream) {
  if (n == 0) return;
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    scale_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(static_cast<T*>(y),
                                                                             static_cast<float>(alpha), n);
  });
  check_launch("scale");
}

void copy_head_columns(void* dst, const void* src, Float type, const HeadColumns& columns, void* stream) {
  const std::int64_t n = columns.tokens * columns.dst_heads * columns.width;
  if (n == 0) return;
  with_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    copy_head_columns_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(
        static_cast<T*>(dst), static_cast<const T*>(src), columns);
  });
  check_launch("copy_head_columns");
}

}  // namespace dsv3::cuda
