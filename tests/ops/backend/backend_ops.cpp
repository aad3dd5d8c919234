#include "backend_ops.hpp"

#include "dsv3/ops/elementwise.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace dsv3::testing::backend {

namespace {

constexpr std::int32_t kGuardWord = 0x5a5a5a5a;
constexpr std::int64_t kGuardWords = DeviceTensor::kGuardBytes / sizeof(std::int32_t);

}  // namespace

double nmse_threshold(DType dtype, double f32_threshold) {
  return dtype == DType::bf16 ? kNmseBf16 : f32_threshold;
}

Tensor representable(const Tensor& host_f32, DType dtype) {
  if (dtype != DType::bf16) return host_f32.clone();
  Tensor rounded = Tensor::empty(host_f32.shape(), DType::f32);
  ops::round_to_bf16(rounded, host_f32);
  return rounded;
}

Tensor random_representable(Shape shape, DType dtype, Rng& rng, double low, double high) {
  return representable(random_uniform(std::move(shape), DType::f32, rng, low, high), dtype);
}

DeviceTensor::DeviceTensor(Shape shape, DType dtype) {
  REQUIRE_MESSAGE(cuda_available(), "no GPU visible: test_backend_ops (ctest label gpu) runs on a machine with one");
  const std::size_t bytes = static_cast<std::size_t>(shape.numel()) * dtype_size(dtype);
  const std::size_t padded = (bytes + 255) / 256 * 256;  // the guard starts aligned, like any allocation
  const Tensor block = Tensor::empty(Shape{static_cast<std::int64_t>(padded + kGuardBytes)}, DType::fp8_e4m3,
                                     Device::cuda);  // one byte per element: any layout fits
  // The tensor is the first `bytes` of the block, the guard the kGuardBytes after the padding.
  tensor_ = Tensor(block.storage(), 0, std::move(shape), dtype);
  guard_ = Tensor(block.storage(), padded, Shape{kGuardWords}, DType::i32);
  const Tensor words = Tensor::empty(Shape{kGuardWords}, DType::i32);
  std::fill_n(words.data<std::int32_t>(), kGuardWords, kGuardWord);
  guard_.copy_from(words);
}

DeviceTensor DeviceTensor::upload(const Tensor& host, DType dtype) {
  DeviceTensor device(host.shape(), dtype);
  if (dtype == host.dtype()) {
    device.tensor_.copy_from(host);
  } else {
    const Tensor converted = Tensor::empty(host.shape(), dtype);
    ops::convert(converted, host);
    device.tensor_.copy_from(converted);
  }
  return device;
}

DeviceTensor DeviceTensor::poisoned(Shape shape, DType dtype) {
  DeviceTensor device(shape, dtype);
  const Tensor host = Tensor::empty(shape, dtype);
  if (is_floating(dtype)) {
    const Tensor nan = Tensor::empty(shape, DType::f32);
    std::fill_n(nan.data<float>(), nan.numel(), std::numeric_limits<float>::quiet_NaN());
    ops::convert(host, nan);
  } else {
    const Tensor minus_one = Tensor::empty(shape, DType::i64);
    std::fill_n(minus_one.data<std::int64_t>(), minus_one.numel(), -1);
    ops::convert(host, minus_one);
  }
  device.tensor_.copy_from(host);
  return device;
}

Tensor DeviceTensor::download() const {
  const Tensor host = tensor_.to(Device::cpu);
  if (!is_floating(host.dtype()) || host.dtype() == DType::f32) return host;
  const Tensor f32 = Tensor::empty(host.shape(), DType::f32);
  ops::convert(f32, host);
  return f32;
}

void DeviceTensor::check_guard(const std::string& what) const {
  const Tensor words = guard_.to(Device::cpu);
  std::int64_t first_changed = -1;
  for (std::int64_t i = 0; i < kGuardWords && first_changed < 0; ++i) {
    if (words.data<std::int32_t>()[i] != kGuardWord) first_changed = i;
  }
  INFO(what, ": byte ", first_changed * 4, " after the end of ", tensor_.describe(), " was overwritten");
  REQUIRE(first_changed == -1);
}

Nmse nmse(const Tensor& actual, const Tensor& expected) {
  REQUIRE(actual.shape() == expected.shape());
  Nmse result;
  double error = 0.0, norm = 0.0, worst = -1.0;
  std::int64_t worst_index = -1;
  for (std::int64_t i = 0; i < expected.numel(); ++i) {
    const double a = value_at(actual, i), e = value_at(expected, i);
    if (!std::isfinite(e)) continue;
    if (!std::isfinite(a)) {
      if (result.non_finite++ == 0) worst_index = i;
      continue;
    }
    error += (a - e) * (a - e);
    norm += e * e;
    if (result.non_finite == 0 && std::fabs(a - e) > worst) {
      worst = std::fabs(a - e);
      worst_index = i;
    }
  }
  result.value = norm > 0.0 ? error / norm : error;
  if (worst_index >= 0) {
    result.message = fmt::format("NMSE {:.3e}, {} non-finite; element {}: {} vs expected {}", result.value,
                                 result.non_finite, worst_index, value_at(actual, worst_index),
                                 value_at(expected, worst_index));
  }
  return result;
}

void check_output(const std::string& what, const DeviceTensor& actual, const Tensor& expected, double threshold) {
  const Tensor expected_f32 = Tensor::empty(expected.shape(), DType::f32);
  ops::convert(expected_f32, expected);
  const Nmse result = nmse(actual.download(), expected_f32);
  INFO(what, " ", actual.tensor().describe(), ": ", result.message, " (threshold ", threshold, ")");
  CHECK(result.non_finite == 0);
  CHECK(result.value <= threshold);
  actual.check_guard(what);
}

void check_equal(const std::string& what, const DeviceTensor& actual, const Tensor& expected) {
  const Tensor host = actual.download();
  REQUIRE(host.shape() == expected.shape());
  std::int64_t first_difference = -1;
  for (std::int64_t i = 0; i < expected.numel() && first_difference < 0; ++i) {
    if (value_at(host, i) != value_at(expected, i)) first_difference = i;
  }
  INFO(what, " ", actual.tensor().describe(), ": first difference at element ", first_difference);
  CHECK(first_difference == -1);
  actual.check_guard(what);
}

std::string cpu_error_message(const std::function<void()>& call) {
  std::string message;
  try {
    call();
  } catch (const dsv3::Error& error) {
    message = error.what();
  }
  REQUIRE(!message.empty());
  for (std::size_t at = message.find("@cpu"); at != std::string::npos; at = message.find("@cpu", at)) {
    message.replace(at, 4, "@cuda");
  }
  return message;
}

}  // namespace dsv3::testing::backend
