#include "dsv3/ops/cpu/permute.hpp"

#include "dsv3/ops/cpu/dispatch.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace dsv3::ops::cpu {

PermutePlan make_permute_plan(const Tensor& experts, std::int64_t num_experts) {
  const std::int64_t tokens = experts.size(0);
  const std::int64_t top_k = experts.size(1);
  const std::int32_t* expert = experts.data<std::int32_t>();
  PermutePlan plan{.source_rows = Tensor::empty(Shape{tokens * top_k}, DType::i32),
                   .slot_rows = Tensor::empty(Shape{tokens, top_k}, DType::i32),
                   .offsets = Tensor::zeros(Shape{num_experts + 1}, DType::i64)};
  // Counting sort: offsets[e + 1] = tokens routed to e, then prefix sums; a serial pass in (t, k) order that
  // hands out each expert's rows in turn keeps the sort stable.
  std::int64_t* offset = plan.offsets.data<std::int64_t>();
  for (std::int64_t i = 0; i < tokens * top_k; ++i) {
    DSV3_CHECK(expert[i] >= 0 && expert[i] < num_experts,
               "make_permute_plan: experts[{}, {}] is {}, expected an expert id in [0, {})", i / top_k, i % top_k,
               expert[i], num_experts);
    ++offset[expert[i] + 1];
  }
  for (std::int64_t e = 0; e < num_experts; ++e) offset[e + 1] += offset[e];
  std::vector<std::int64_t> next_row(offset, offset + num_experts);
  std::int32_t* source_row = plan.source_rows.data<std::int32_t>();
  std::int32_t* slot_row = plan.slot_rows.data<std::int32_t>();
  for (std::int64_t i = 0; i < tokens * top_k; ++i) {
    const std::int64_t row = next_row[expert[i]]++;
    source_row[row] = static_cast<std::int32_t>(i / top_k);
    slot_row[i] = static_cast<std::int32_t>(row);
  }
  return plan;
}

void permute_forward(const Tensor& y, const Tensor& x, const PermutePlan& plan) {
  const std::int64_t rows = y.size(0);
  const std::int64_t features = y.size(1);
  const std::int32_t* source_row = plan.source_rows.data<std::int32_t>();
  with_float_type(x.dtype(), "permute_forward", [&]<class T>() {
    const T* in = x.data<T>();
    T* out = y.data<T>();
#pragma omp parallel for
    for (std::int64_t r = 0; r < rows; ++r) {
      std::copy_n(in + source_row[r] * features, features, out + r * features);
    }
  });
}

void permute_backward(const Tensor& dx, const Tensor& dy, const PermutePlan& plan) {
  const std::int64_t tokens = dx.size(0);
  const std::int64_t features = dx.size(1);
  const std::int64_t top_k = plan.slot_rows.size(1);
  const std::int32_t* slot_row = plan.slot_rows.data<std::int32_t>();
  with_float_type(dx.dtype(), "permute_backward", [&]<class T>() {
    const T* dout = dy.data<T>();
    T* din = dx.data<T>();
    // Gather per token (not scatter per row): every dx row has one writer, and the sum runs in k order.
#pragma omp parallel for
    for (std::int64_t t = 0; t < tokens; ++t) {
      T* din_t = din + t * features;
      std::fill_n(din_t, features, T{0});
      for (std::int64_t k = 0; k < top_k; ++k) {
        const T* dout_row = dout + slot_row[t * top_k + k] * features;
        for (std::int64_t j = 0; j < features; ++j) din_t[j] += dout_row[j];
      }
    }
  });
}

void unpermute_forward(const Tensor& y, const Tensor& expert_out, const Tensor& weights, const PermutePlan& plan) {
  const std::int64_t tokens = y.size(0);
  const std::int64_t features = y.size(1);
  const std::int64_t top_k = plan.slot_rows.size(1);
  const std::int32_t* slot_row = plan.slot_rows.data<std::int32_t>();
  with_float_type(y.dtype(), "unpermute_forward", [&]<class T>() {
    const T* in = expert_out.data<T>();
    const T* weight = weights.data<T>();
    T* out = y.data<T>();
#pragma omp parallel for
    for (std::int64_t t = 0; t < tokens; ++t) {
      T* out_t = out + t * features;
      std::fill_n(out_t, features, T{0});
      for (std::int64_t k = 0; k < top_k; ++k) {
        const T w = weight[t * top_k + k];
        const T* in_row = in + slot_row[t * top_k + k] * features;
        for (std::int64_t j = 0; j < features; ++j) out_t[j] += w * in_row[j];
      }
    }
  });
}

void unpermute_backward(const Tensor& dexpert_out, const Tensor& dweights, const Tensor& dy,
                        const Tensor& expert_out, const Tensor& weights, const PermutePlan& plan) {
  const std::int64_t tokens = dy.size(0);
  const std::int64_t features = dy.size(1);
  const std::int64_t top_k = plan.slot_rows.size(1);
  const std::int32_t* slot_row = plan.slot_rows.data<std::int32_t>();
  with_float_type(dy.dtype(), "unpermute_backward", [&]<class T>() {
    const T* dout = dy.data<T>();
    const T* in = expert_out.data<T>();
    const T* weight = weights.data<T>();
    T* din = dexpert_out.data<T>();
    T* dweight = dweights.data<T>();
    // slot_rows is a bijection onto the sorted rows, so each dexpert_out row has exactly one writer.
#pragma omp parallel for
    for (std::int64_t t = 0; t < tokens; ++t) {
      const T* dout_t = dout + t * features;
      for (std::int64_t k = 0; k < top_k; ++k) {
        const std::int64_t row = slot_row[t * top_k + k];
        const T w = weight[t * top_k + k];
        const T* in_row = in + row * features;
        T* din_row = din + row * features;
        T dot = 0;
        for (std::int64_t j = 0; j < features; ++j) {
          din_row[j] = w * dout_t[j];
          dot += dout_t[j] * in_row[j];
        }
        dweight[t * top_k + k] = dot;
      }
    }
  });
}

}  // namespace dsv3::ops::cpu
