#include "dsv3/ops/cpu/rope.hpp"

#include "dsv3/ops/cpu/dispatch.hpp"

#include <cmath>
#include <cstdint>

namespace dsv3::ops::cpu {

namespace {

// out = M·in per pair, M = [[c, −s·sign], [s·sign, c]] with (c, s) the table entries at the token's position:
// the rotation for sign = +1, its transpose (the inverse rotation when magnitude is 1) for sign = −1.
// out may alias in: each pair is read whole before it is written.
void rotate_pairs(const char* op, const Tensor& out, const Tensor& in, const Tensor& cos, const Tensor& sin,
                  const Tensor& positions, double sign) {
  const std::int64_t tokens = in.size(0);
  const std::int64_t heads = in.size(1);
  const std::int64_t pairs = in.size(2) / 2;
  const std::int64_t table_rows = cos.size(0);
  const std::int32_t* position = positions.data<std::int32_t>();
  // Serial, before the parallel loop: an exception must not leave an OpenMP region.
  for (std::int64_t t = 0; t < tokens; ++t) {
    DSV3_CHECK(position[t] >= 0 && position[t] < table_rows,
               "{}: positions[{}] is {}, expected a position in [0, {}) (the rows of the cos/sin table)", op, t,
               position[t], table_rows);
  }
  with_float_type(in.dtype(), op, [&]<class T>() {
    const T* src = in.data<T>();         // [T, H, R]
    T* dst = out.data<T>();              // [T, H, R]
    const T* cos_table = cos.data<T>();  // [max_seq_len, R/2]
    const T* sin_table = sin.data<T>();  // [max_seq_len, R/2]
    const T sin_sign = static_cast<T>(sign);
#pragma omp parallel for
    for (std::int64_t t = 0; t < tokens; ++t) {
      const T* c = cos_table + position[t] * pairs;
      const T* s = sin_table + position[t] * pairs;
      for (std::int64_t h = 0; h < heads; ++h) {
        const T* x = src + (t * heads + h) * 2 * pairs;
        T* y = dst + (t * heads + h) * 2 * pairs;
        for (std::int64_t i = 0; i < pairs; ++i) {
          const T x0 = x[2 * i], x1 = x[2 * i + 1];
          const T si = sin_sign * s[i];
          y[2 * i] = x0 * c[i] - x1 * si;
          y[2 * i + 1] = x0 * si + x1 * c[i];
        }
      }
    }
  });
}

}  // namespace

void rope_table(const Tensor& cos, const Tensor& sin, const std::vector<double>& frequencies, double magnitude) {
  const std::int64_t rows = cos.size(0);
  const std::int64_t pairs = static_cast<std::int64_t>(frequencies.size());
  with_float_type(cos.dtype(), "rope_table", [&]<class T>() {
    T* cos_table = cos.data<T>();  // [max_seq_len, R/2]
    T* sin_table = sin.data<T>();  // [max_seq_len, R/2]
#pragma omp parallel for
    for (std::int64_t p = 0; p < rows; ++p) {
      for (std::int64_t i = 0; i < pairs; ++i) {
        // The angle in double: p·f_i reaches 10^5 radians, where f32 keeps barely two decimals.
        const double angle = static_cast<double>(p) * frequencies[i];
        cos_table[p * pairs + i] = static_cast<T>(std::cos(angle) * magnitude);
        sin_table[p * pairs + i] = static_cast<T>(std::sin(angle) * magnitude);
      }
    }
  });
}

void rope_forward(const Tensor& y, const Tensor& x, const Tensor& cos, const Tensor& sin, const Tensor& positions) {
  rotate_pairs("rope_forward", y, x, cos, sin, positions, 1.0);
}

void rope_backward(const Tensor& dx, const Tensor& dy, const Tensor& cos, const Tensor& sin, const Tensor& positions) {
  // y = M·x, so dx = Mᵀ·dy: the same rotation with the sine negated.
  rotate_pairs("rope_backward", dx, dy, cos, sin, positions, -1.0);
}

}  // namespace dsv3::ops::cpu
