// Rotary position embedding on the interleaved-pair layout (x[2i], x[2i+1] rotated together as one complex
// number), with YaRN frequency interpolation. See REFERENCE.md §2.
#pragma once

#include "dsv3/ops/common.hpp"

#include <vector>

namespace dsv3::ops {

struct RopeConfig {
  std::int64_t rope_dim = 64;
  double theta = 1e4;
  double factor = 40.0;  // YaRN is applied when factor > 1 and yarn is true
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  std::int64_t original_seq_len = 4096;
  bool yarn = true;
};

struct YarnRange {
  std::int64_t low;
  std::int64_t high;
};

// The dimension range over which YaRN blends interpolated and original frequencies (10 and 23 for the defaults).
YarnRange yarn_correction_range(const RopeConfig& config);
// YaRN attention factor m = 0.1 · mscale · ln(factor) + 1 (1 when factor ≤ 1).
double yarn_mscale(double factor, double mscale);
// The rope_dim/2 rotation frequencies f_i (after YaRN when it applies).
std::vector<double> rope_frequencies(const RopeConfig& config);

// cos, sin: [max_seq_len, rope_dim/2] f32 or f64: cos(p·f_i)·magnitude, sin(p·f_i)·magnitude.
// magnitude is 1 except for HF configs whose mscale differs from mscale_all_dim.
void rope_table(const Tensor& cos, const Tensor& sin, const RopeConfig& config, double magnitude = 1.0);

// x: [T, H, R] (R = rope_dim), positions: i32 [T] in [0, max_seq_len), y: like x (y may alias x). cos and sin have
// x's dtype; on CUDA they may also be f32 when x is bf16. A position out of range is an error naming it.
void rope_forward(const Tensor& y, const Tensor& x, const Tensor& cos, const Tensor& sin, const Tensor& positions,
                  Stream stream = {});
// The inverse rotation of dy (dx may alias dy).
void rope_backward(const Tensor& dx, const Tensor& dy, const Tensor& cos, const Tensor& sin, const Tensor& positions,
                   Stream stream = {});

}  // namespace dsv3::ops
