#include "dsv3/ops/cpu/loss.hpp"

#include "dsv3/ops/cpu/dispatch.hpp"
#include "dsv3/ops/cpu/vector_math.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace dsv3::ops::cpu {

namespace {

// Serial, before the parallel loops: an exception must not leave an OpenMP region, and a bad target would
// index outside its row.
template <class Index>
void check_targets(const char* op, const Index* target, std::int64_t rows, std::int64_t classes,
                   std::int64_t ignore_index) {
  for (std::int64_t row = 0; row < rows; ++row) {
    const std::int64_t t = target[row];
    DSV3_CHECK(t == ignore_index || (t >= 0 && t < classes),
               "{}: the target of row {} is {}, expected a class in [0, {}) or the ignore_index {}", op, row, t,
               classes, ignore_index);
  }
}

}  // namespace

void cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& logits, const Tensor& targets,
                           std::int64_t ignore_index) {
  const std::int64_t rows = logits.size(0);
  const std::int64_t classes = logits.size(1);
  with_index_type(targets.dtype(), "cross_entropy_forward", [&]<class Index>() {
    const Index* target = targets.data<Index>();  // [N]
    check_targets("cross_entropy_forward", target, rows, classes, ignore_index);
    with_float_type(logits.dtype(), "cross_entropy_forward", [&]<class T>() {
      const T* logit = logits.data<T>();  // [N, V]
      T* lse_row = lse.data<T>();         // [N]
      // lse of every row, ignored ones included: it costs little (few rows are ignored) and leaves lse fully
      // defined. Max subtracted so exp cannot overflow; the sum in double so V = 129280 terms lose nothing.
#pragma omp parallel for
      for (std::int64_t row = 0; row < rows; ++row) {
        const T* x = logit + row * classes;
        T max = -std::numeric_limits<T>::infinity();
        // A comparison, not std::max: GCC vectorises this form of the reduction.
#pragma omp simd reduction(max : max)
        for (std::int64_t v = 0; v < classes; ++v) max = x[v] > max ? x[v] : max;
        double sum = 0.0;
#pragma omp simd reduction(+ : sum)
        for (std::int64_t v = 0; v < classes; ++v) sum += static_cast<double>(vector_exp(x[v] - max));
        lse_row[row] = static_cast<T>(static_cast<double>(max) + std::log(sum));
      }
      // The sum over rows is serial, in row order: O(N) next to the O(N·V) above, and the loss is then the
      // same bits whatever the thread count.
      double total = 0.0;
      for (std::int64_t row = 0; row < rows; ++row) {
        if (target[row] == ignore_index) continue;
        total += static_cast<double>(lse_row[row]) - logit[row * classes + target[row]];
      }
      loss.data<T>()[0] = static_cast<T>(total);
    });
  });
}

void cross_entropy_backward(const Tensor& dlogits, const Tensor& logits, const Tensor& lse, const Tensor& targets,
                            double dloss, std::int64_t ignore_index) {
  const std::int64_t rows = logits.size(0);
  const std::int64_t classes = logits.size(1);
  with_index_type(targets.dtype(), "cross_entropy_backward", [&]<class Index>() {
    const Index* target = targets.data<Index>();  // [N]
    check_targets("cross_entropy_backward", target, rows, classes, ignore_index);
    with_float_type(logits.dtype(), "cross_entropy_backward", [&]<class T>() {
      const T* logit = logits.data<T>();  // [N, V]
      const T* lse_row = lse.data<T>();   // [N]
      T* dlogit = dlogits.data<T>();      // [N, V]
      const T scale = static_cast<T>(dloss);
#pragma omp parallel for
      for (std::int64_t row = 0; row < rows; ++row) {
        T* dx = dlogit + row * classes;
        if (target[row] == ignore_index) {
          std::fill_n(dx, classes, T{0});
          continue;
        }
        const T* x = logit + row * classes;
        // softmax = exp(x − lse), from the lse of forward: no second pass over the row.
        const T row_lse = lse_row[row];
#pragma omp simd
        for (std::int64_t v = 0; v < classes; ++v) dx[v] = scale * vector_exp(x[v] - row_lse);
        dx[target[row]] -= scale;
      }
    });
  });
}

std::int64_t count_valid_targets(const Tensor& targets, std::int64_t ignore_index) {
  std::int64_t count = 0;
  with_index_type(targets.dtype(), "count_valid_targets", [&]<class Index>() {
    const Index* target = targets.data<Index>();
    count = std::count_if(target, target + targets.numel(), [&](Index t) { return t != ignore_index; });
  });
  return count;
}

}  // namespace dsv3::ops::cpu
