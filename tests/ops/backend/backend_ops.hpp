// test_backend_ops: every op on CUDA against the CPU reference on the same inputs (ggml's test-backend-ops is the
// model). Inputs are made on the host in f32 with values exactly representable in the device dtype, so both
// backends see the same numbers and only the arithmetic differs; outputs are compared by normalised mean squared
// error, NMSE = Σ(actual − expected)² / Σ expected², against a threshold per dtype and kind of arithmetic.
// Every device tensor is followed by a guard region holding a sentinel, checked after the op; outputs the op
// overwrites start as NaN, so an element the kernel forgot shows up.
#pragma once

#include "dsv3/tensor/tensor.hpp"

#include "support/testing.hpp"

#include <functional>
#include <string>

namespace dsv3::testing::backend {

// fp32 arithmetic on both sides: only the order of summation differs.
inline constexpr double kNmseF32 = 1e-10;
// f32 storage, bf16 tensor-core products with fp32 accumulation, inputs bf16-exact: intermediate values the kernel
// rounds to bf16 before a product (attention probabilities) are the only other difference.
inline constexpr double kNmseTensorCore = 1e-5;
// bf16 storage: each output rounded to bf16 (relative error up to 2^-9), plus bf16 intermediates.
inline constexpr double kNmseBf16 = 1e-4;

// The threshold for an op's outputs in `dtype`: kNmseBf16 for bf16, else `f32_threshold`.
double nmse_threshold(DType dtype, double f32_threshold = kNmseF32);

// Host f32 tensor whose values are exactly representable in `dtype` (f32: unchanged; bf16: rounded).
Tensor representable(const Tensor& host_f32, DType dtype);
Tensor random_representable(Shape shape, DType dtype, Rng& rng, double low = -1.0, double high = 1.0);

// A CUDA tensor followed in its allocation by a guard region of kGuardBytes filled with a sentinel byte.
class DeviceTensor {
 public:
  static constexpr std::size_t kGuardBytes = 4096;

  // A copy of `host` in `dtype`: floats converted (f32 → bf16 rounds), index tensors copied as they are.
  static DeviceTensor upload(const Tensor& host, DType dtype);
  static DeviceTensor upload(const Tensor& host) { return upload(host, host.dtype()); }
  // An output the op overwrites: every element NaN (float dtypes) or -1 (index dtypes).
  static DeviceTensor poisoned(Shape shape, DType dtype);

  const Tensor& tensor() const { return tensor_; }
  operator const Tensor&() const { return tensor_; }  // NOLINT: passed straight to ops
  // The elements on the host: floats as f32, index tensors in their dtype.
  Tensor download() const;
  // REQUIREs that the guard region is untouched; `what` names the op and argument in the failure.
  void check_guard(const std::string& what) const;

 private:
  DeviceTensor(Shape shape, DType dtype);
  Tensor tensor_;
  Tensor guard_;  // the kGuardBytes right after tensor_, as i32 words
};

struct Nmse {
  double value = 0.0;
  std::int64_t non_finite = 0;  // NaN/Inf in actual where expected is finite
  std::string message;
};
Nmse nmse(const Tensor& actual, const Tensor& expected);

// REQUIREs actual (a device output, downloaded) ≈ expected (host): no NaN/Inf where expected is finite,
// NMSE ≤ threshold, and an intact guard region.
void check_output(const std::string& what, const DeviceTensor& actual, const Tensor& expected, double threshold);
// REQUIREs an index output equal to the host's element for element, and an intact guard region.
void check_equal(const std::string& what, const DeviceTensor& actual, const Tensor& expected);

// The message of the dsv3::Error that `call` (the op on host tensors) throws, "@cpu" in tensor descriptions
// renamed "@cuda": what the CUDA op must throw for the same arguments. REQUIREs that `call` throws.
std::string cpu_error_message(const std::function<void()>& call);

// The float dtypes every op is tested in on the GPU.
inline constexpr DType kDeviceFloatTypes[] = {DType::f32, DType::bf16};

}  // namespace dsv3::testing::backend
