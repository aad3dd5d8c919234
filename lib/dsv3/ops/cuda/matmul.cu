#include "dsv3/ops/cuda/matmul.hpp"

#include "dsv3/ops/cuda/common.cuh"

#include <cublasLt.h>
#include <cublas_v2.h>

#include <algorithm>
#include <array>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

namespace dsv3::cuda {

namespace {

// cuBLASLt picks kernels by workspace size too; 32 MiB is what it recommends for Hopper.
constexpr std::size_t kWorkspaceBytes = std::size_t{32} << 20;

void check_lt(cublasStatus_t status, const char* call) {
  DSV3_CHECK(status == CUBLAS_STATUS_SUCCESS, "matmul: {} failed: {}", call, cublasGetStatusString(status));
}

// The largest power of two ≤ 16 dividing the address: cuBLASLt's fast kernels need 16-byte aligned operands,
// and row views of a tensor (an expert's rows, a batch entry) may be less aligned than the allocation.
int alignment_of(const void* pointer) {
  const auto address = reinterpret_cast<std::uintptr_t>(pointer);
  int alignment = 16;
  while (alignment > 1 && address % alignment != 0) alignment /= 2;
  return alignment;
}

// Everything that selects a cuBLASLt plan.
struct PlanKey {
  GemmShape shape;
  Float type;
  bool accumulate;  // beta ≠ 0
  int align_a, align_b, align_c;

  auto tie() const {
    return std::tie(shape.m, shape.n, shape.k, shape.transpose_a, shape.transpose_b, shape.batch, shape.a_stride,
                    shape.b_stride, shape.c_stride, type, accumulate, align_a, align_b, align_c);
  }
  bool operator<(const PlanKey& other) const { return tie() < other.tie(); }
};

cudaDataType_t data_type(Float type) { return type == Float::f32 ? CUDA_R_32F : CUDA_R_16BF; }
// bf16 tensor cores with fp32 accumulation for both storage types.
cublasComputeType_t compute_type(Float type) {
  return type == Float::f32 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
}

// Row-major c = op(a)·op(b) is the column-major product cᵀ = op(b)ᵀ·op(a)ᵀ, so cuBLAS's "A" is our b and its "B"
// our a, with m and n swapped; each stored row-major [r, c] matrix is a column-major [c, r] one with leading
// dimension c. These are the column-major rows (= leading dimension) and columns of each stored operand.
struct ColumnMajor {
  std::int64_t b_rows, b_columns, a_rows, a_columns, c_rows, c_columns;
};
ColumnMajor column_major(const GemmShape& s) {
  return {s.transpose_b ? s.k : s.n, s.transpose_b ? s.n : s.k, s.transpose_a ? s.m : s.k,
          s.transpose_a ? s.k : s.m, s.n,                           s.m};
}

// The descriptors and the heuristic's algorithm for one key, made once; `usable()` is false when cuBLASLt offers
// no algorithm (operands too unaligned for any of its kernels), and the product then goes through cuBLAS.
class Plan {
 public:
  Plan(cublasLtHandle_t handle, const PlanKey& key) {
    const GemmShape& s = key.shape;
    const ColumnMajor dims = column_major(s);
    check_lt(cublasLtMatmulDescCreate(&desc_, compute_type(key.type), CUDA_R_32F), "cublasLtMatmulDescCreate");
    const cublasOperation_t op_b = s.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt's A
    const cublasOperation_t op_a = s.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt's B
    check_lt(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &op_b, sizeof op_b), "TRANSA");
    check_lt(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &op_a, sizeof op_a), "TRANSB");
    const cudaDataType_t data = data_type(key.type);
    layout_b_ = make_layout(data, dims.b_rows, dims.b_columns, s.batch, s.b_stride);
    layout_a_ = make_layout(data, dims.a_rows, dims.a_columns, s.batch, s.a_stride);
    layout_c_ = make_layout(data, dims.c_rows, dims.c_columns, s.batch, s.c_stride);

    cublasLtMatmulPreference_t preference = nullptr;
    check_lt(cublasLtMatmulPreferenceCreate(&preference), "cublasLtMatmulPreferenceCreate");
    const std::size_t workspace = kWorkspaceBytes;
    const std::uint32_t align_a = key.align_b, align_b = key.align_a, align_c = key.align_c;  // Lt's A is our b
    cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                         sizeof workspace);
    cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a,
                                         sizeof align_a);
    cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b,
                                         sizeof align_b);
    cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c,
                                         sizeof align_c);
    cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c,
                                         sizeof align_c);
    int found = 0;
    const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(handle, desc_, layout_b_, layout_a_, layout_c_,
                                                                 layout_c_, preference, 1, &heuristic_, &found);
    cublasLtMatmulPreferenceDestroy(preference);
    usable_ = status == CUBLAS_STATUS_SUCCESS && found > 0;
  }
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    cublasLtMatrixLayoutDestroy(layout_a_);
    cublasLtMatrixLayoutDestroy(layout_b_);
    cublasLtMatrixLayoutDestroy(layout_c_);
    cublasLtMatmulDescDestroy(desc_);
  }

  bool usable() const { return usable_; }
  void run(cublasLtHandle_t handle, void* c, const void* a, const void* b, float alpha, float beta, void* workspace,
           cudaStream_t stream) const {
    check_lt(cublasLtMatmul(handle, desc_, &alpha, b, layout_b_, a, layout_a_, &beta, c, layout_c_, c, layout_c_,
                            &heuristic_.algo, workspace, kWorkspaceBytes, stream),
             "cublasLtMatmul");
  }

 private:
  static cublasLtMatrixLayout_t make_layout(cudaDataType_t data, std::int64_t rows, std::int64_t columns,
                                            std::int64_t batch, std::int64_t stride) {
    cublasLtMatrixLayout_t layout = nullptr;
    check_lt(cublasLtMatrixLayoutCreate(&layout, data, static_cast<std::uint64_t>(rows),
                                        static_cast<std::uint64_t>(columns), rows),
             "cublasLtMatrixLayoutCreate");
    if (batch > 1) {
      const std::int32_t count = static_cast<std::int32_t>(batch);
      check_lt(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count),
               "BATCH_COUNT");
      check_lt(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                sizeof stride),
               "STRIDED_BATCH_OFFSET");
    }
    return layout;
  }

  cublasLtMatmulDesc_t desc_ = nullptr;
  cublasLtMatrixLayout_t layout_a_ = nullptr, layout_b_ = nullptr, layout_c_ = nullptr;
  cublasLtMatmulHeuristicResult_t heuristic_{};
  bool usable_ = false;
};

// One product of the routed experts: c = a·op(b) + beta·c for one expert's rows.
struct ExpertProduct {
  void* c;
  const void* a;
  const void* b;
  GemmShape shape;
  float beta;
};

// Streams the routed experts' products run on side by side: one expert's product is small (a few hundred rows
// of [1408, 2048] fill a fraction of the GPU's SMs), so several at once keep it busy.
constexpr int kExpertLanes = 4;

// The process's cuBLASLt and cuBLAS handles, plans, and the expert lanes with a cuBLASLt workspace each (one GPU
// per rank, so one of each). Plans are kept for the life of the process: a training run repeats a few dozen shapes
// (the routed experts' row counts vary, bounded by the token count).
class Blas {
 public:
  static Blas& instance() {
    static Blas blas;
    return blas;
  }

  void gemm(void* c, const void* a, const void* b, Float type, const GemmShape& shape, float alpha, float beta,
            cudaStream_t stream) {
    const std::lock_guard<std::mutex> lock(mutex_);
    const Plan& found = plan(c, a, b, type, shape, beta);
    if (found.usable()) {
      found.run(lt_handle_, c, a, b, alpha, beta, workspaces_[0], stream);
    } else {
      gemm_cublas(c, a, b, type, shape, alpha, beta, stream);
    }
  }

  // The same product through cublasGemmStridedBatchedEx with cuBLAS's default algorithm (never on an expert lane:
  // the cuBLAS handle's workspace is not per stream).
  void gemm_cublas(void* c, const void* a, const void* b, Float type, const GemmShape& shape, float alpha, float beta,
                   cudaStream_t stream) {
    const ColumnMajor dims = column_major(shape);
    check_lt(cublasSetStream(handle_, stream), "cublasSetStream");
    const auto as_int = [](std::int64_t value) { return static_cast<int>(value); };
    check_lt(cublasGemmStridedBatchedEx(
                 handle_, shape.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N, shape.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                 as_int(shape.n), as_int(shape.m), as_int(shape.k), &alpha, b, data_type(type), as_int(dims.b_rows),
                 shape.b_stride, a, data_type(type), as_int(dims.a_rows), shape.a_stride, &beta, c, data_type(type),
                 as_int(dims.c_rows), shape.c_stride, as_int(shape.batch), compute_type(type), CUBLAS_GEMM_DEFAULT),
             "cublasGemmStridedBatchedEx");
  }

  // The experts' products on the expert lanes (round robin) between a fork from and a join into `caller`; on
  // `caller` itself, one after another, when one of them needs the cuBLAS fallback. Plans are looked up once.
  void expert_products(const std::vector<ExpertProduct>& products, Float type, cudaStream_t caller) {
    const std::lock_guard<std::mutex> lock(mutex_);
    std::vector<const Plan*> found;
    for (const ExpertProduct& p : products) found.push_back(&plan(p.c, p.a, p.b, type, p.shape, p.beta));
    if (!std::all_of(found.begin(), found.end(), [](const Plan* candidate) { return candidate->usable(); })) {
      for (const ExpertProduct& p : products) gemm_cublas(p.c, p.a, p.b, type, p.shape, 1.0f, p.beta, caller);
      return;
    }
    fork(caller);
    for (std::size_t i = 0; i < products.size(); ++i) {
      const ExpertProduct& p = products[i];
      const std::size_t lane = i % kExpertLanes;
      found[i]->run(lt_handle_, p.c, p.a, p.b, 1.0f, p.beta, workspaces_[lane + 1], lanes_[lane]);
    }
    join(caller);
  }

 private:
  // Fork: every lane waits for the work queued on `caller` so far. Join: `caller` waits for every lane.
  void fork(cudaStream_t caller) {
    check_cuda(cudaEventRecord(fork_, caller), "grouped_linear", "cudaEventRecord");
    for (cudaStream_t lane : lanes_) {
      check_cuda(cudaStreamWaitEvent(lane, fork_, 0), "grouped_linear", "cudaStreamWaitEvent");
    }
  }
  void join(cudaStream_t caller) {
    for (int i = 0; i < kExpertLanes; ++i) {
      check_cuda(cudaEventRecord(joins_[i], lanes_[i]), "grouped_linear", "cudaEventRecord");
      check_cuda(cudaStreamWaitEvent(caller, joins_[i], 0), "grouped_linear", "cudaStreamWaitEvent");
    }
  }

  Blas() {
    check_lt(cublasLtCreate(&lt_handle_), "cublasLtCreate");
    check_lt(cublasCreate(&handle_), "cublasCreate");
    for (void*& workspace : workspaces_) {
      check_cuda(cudaMalloc(&workspace, kWorkspaceBytes), "matmul", "cudaMalloc (cuBLASLt workspace)");
    }
    for (cudaStream_t& lane : lanes_) {
      check_cuda(cudaStreamCreateWithFlags(&lane, cudaStreamNonBlocking), "matmul", "cudaStreamCreateWithFlags");
    }
    check_cuda(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming), "matmul", "cudaEventCreate");
    for (cudaEvent_t& join : joins_) {
      check_cuda(cudaEventCreateWithFlags(&join, cudaEventDisableTiming), "matmul", "cudaEventCreate");
    }
  }
  ~Blas() = default;  // the driver frees them at process exit; destroying them after it unloaded would crash

  const Plan& plan(const void* c, const void* a, const void* b, Float type, const GemmShape& shape, float beta) {
    const PlanKey key{shape, type, beta != 0.0f, alignment_of(a), alignment_of(b), alignment_of(c)};
    auto found = plans_.find(key);
    if (found == plans_.end()) found = plans_.try_emplace(key, lt_handle_, key).first;
    return found->second;
  }

  std::mutex mutex_;
  cublasLtHandle_t lt_handle_ = nullptr;
  cublasHandle_t handle_ = nullptr;
  std::array<void*, kExpertLanes + 1> workspaces_{};  // [0]: the caller's stream, [1 + i]: lane i
  std::array<cudaStream_t, kExpertLanes> lanes_{};
  cudaEvent_t fork_ = nullptr;
  std::array<cudaEvent_t, kExpertLanes> joins_{};
  std::map<PlanKey, Plan> plans_;
};

// One unbatched product of the given extents.
GemmShape product(std::int64_t m, std::int64_t n, std::int64_t k, bool transpose_a, bool transpose_b) {
  GemmShape shape;
  shape.m = m;
  shape.n = n;
  shape.k = k;
  shape.transpose_a = transpose_a;
  shape.transpose_b = transpose_b;
  return shape;
}

std::size_t element_size(Float type) { return type == Float::f32 ? 4 : 2; }

const void* advance(const void* base, std::int64_t elements, Float type) {
  return static_cast<const char*>(base) + elements * static_cast<std::int64_t>(element_size(type));
}
void* advance(void* base, std::int64_t elements, Float type) {
  return static_cast<char*>(base) + elements * static_cast<std::int64_t>(element_size(type));
}

}  // namespace

void gemm(void* c, const void* a, const void* b, Float type, const GemmShape& shape, double alpha, double beta,
          void* stream) {
  if (shape.m == 0 || shape.n == 0 || shape.batch == 0) return;
  if (shape.k == 0) {  // an empty sum: c = beta · c, which cuBLASLt does not accept as a product
    if (beta != 0.0 && beta != 1.0) fail("matmul: k = 0 with beta {} is not supported on CUDA", beta);
    if (beta == 0.0) {
      for (std::int64_t e = 0; e < shape.batch; ++e) {
        check_cuda(cudaMemsetAsync(advance(c, e * shape.c_stride, type), 0,
                                   shape.m * shape.n * element_size(type), as_stream(stream)),
                   "matmul", "cudaMemsetAsync");
      }
    }
    return;
  }
  Blas::instance().gemm(c, a, b, type, shape, static_cast<float>(alpha), static_cast<float>(beta),
                        as_stream(stream));
}

void gemm_cublas_reference(void* c, const void* a, const void* b, Float type, std::int64_t m, std::int64_t n,
                           std::int64_t k, void* stream) {
  Blas::instance().gemm_cublas(c, a, b, type, product(m, n, k, false, false), 1.0f, 0.0f, as_stream(stream));
}

void grouped_linear_forward(void* y, const void* x, const void* w, Float type, const std::int64_t* offsets,
                            std::int64_t experts, std::int64_t in, std::int64_t out, void* stream) {
  std::vector<ExpertProduct> products;
  for (std::int64_t e = 0; e < experts; ++e) {
    const std::int64_t rows = offsets[e + 1] - offsets[e];
    if (rows == 0) continue;
    products.push_back({advance(y, offsets[e] * out, type), advance(x, offsets[e] * in, type),
                        advance(w, e * out * in, type), product(rows, out, in, false, true), 0.0f});
  }
  Blas::instance().expert_products(products, type, as_stream(stream));
}

void grouped_linear_backward(void* dx, void* dw, const void* dy, const void* x, const void* w, Float type,
                             const std::int64_t* offsets, std::int64_t experts, std::int64_t in, std::int64_t out,
                             void* stream) {
  // Per expert, dx = dy·w (overwritten) and dw += dyᵀ·x: no two products write the same output, so any lane
  // may take any of them.
  std::vector<ExpertProduct> products;
  for (std::int64_t e = 0; e < experts; ++e) {
    const std::int64_t rows = offsets[e + 1] - offsets[e];
    if (rows == 0) continue;
    const void* dy_e = advance(dy, offsets[e] * out, type);  // [rows, out]
    const void* x_e = advance(x, offsets[e] * in, type);     // [rows, in]
    if (dx != nullptr) {
      products.push_back({advance(dx, offsets[e] * in, type), dy_e, advance(w, e * out * in, type),
                          product(rows, in, out, false, false), 0.0f});
    }
    products.push_back({advance(dw, e * out * in, type), dy_e, x_e, product(out, in, rows, true, false), 1.0f});
  }
  Blas::instance().expert_products(products, type, as_stream(stream));
}

}  // namespace dsv3::cuda
