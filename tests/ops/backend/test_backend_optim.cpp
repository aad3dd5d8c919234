#include "dsv3/ops/optim.hpp"

#include "backend_ops.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

using namespace dsv3;
using namespace dsv3::testing;
using namespace dsv3::testing::backend;

namespace {

// A view of `count` elements one element into `tensor`: not 16-byte aligned (the kernels' element path).
Tensor shifted(const Tensor& tensor, std::int64_t count) {
  return Tensor(tensor.storage(), dtype_size(tensor.dtype()), Shape{count}, tensor.dtype());
}

}  // namespace

TEST_CASE("backend optim: adamw_step in f32, packed and unaligned") {
  Rng rng(61);
  const ops::AdamWOptions options{.lr = 3e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .step = 3};
  for (const std::int64_t n : {1, 7, 1000, 4099}) {
    for (const bool aligned : {true, false}) {
      const std::int64_t buffer = aligned ? n : n + 1;
      const Tensor param = random_uniform(Shape{buffer}, DType::f32, rng);
      const Tensor grad = random_uniform(Shape{buffer}, DType::f32, rng);
      const Tensor exp_avg = random_uniform(Shape{buffer}, DType::f32, rng, -0.1, 0.1);
      const Tensor exp_avg_sq = random_uniform(Shape{buffer}, DType::f32, rng, 0.0, 0.01);
      const DeviceTensor device_param = DeviceTensor::upload(param), device_grad = DeviceTensor::upload(grad);
      const DeviceTensor device_m = DeviceTensor::upload(exp_avg), device_v = DeviceTensor::upload(exp_avg_sq);
      const auto view = [&](const Tensor& tensor) { return aligned ? tensor : shifted(tensor, n); };

      ops::adamw_step(view(param), view(grad), view(exp_avg), view(exp_avg_sq), options);
      ops::adamw_step(view(device_param), view(device_grad), view(device_m), view(device_v), options);
      const std::string where = fmt::format("n {} {}", n, aligned ? "aligned" : "unaligned");
      // The whole buffers: the element before an unaligned view must be unchanged on both sides.
      check_output("adamw_step param " + where, device_param, param, kNmseF32);
      check_output("adamw_step exp_avg " + where, device_m, exp_avg, kNmseF32);
      check_output("adamw_step exp_avg_sq " + where, device_v, exp_avg_sq, kNmseF32);
    }
  }
  const DeviceTensor half = DeviceTensor::poisoned(Shape{4}, DType::bf16);
  CHECK_THROWS_WITH_AS(ops::adamw_step(half, half, half, half, options),
                       doctest::Contains("adamw_step: param is bf16[4]@cuda, expected f32: on CUDA the optimizer "
                                         "updates fp32 master weights and states"),
                       dsv3::Error);
}

TEST_CASE("backend optim: sum_of_squares and global_l2_norm in double, the same bits every run") {
  Rng rng(62);
  std::vector<Tensor> host;
  std::vector<Tensor> device;
  std::vector<DeviceTensor> keep;  // the device tensors' allocations, guards included
  for (const DType dtype : kDeviceFloatTypes) {
    for (const std::int64_t n : {0, 1, 7, 1000, 300001}) {
      const Tensor x = random_representable(Shape{n}, dtype, rng, -2.0, 2.0);
      const DeviceTensor device_x = DeviceTensor::upload(x, dtype);
      const double expected = ops::sum_of_squares(x);
      const double actual = ops::sum_of_squares(device_x);
      INFO("sum_of_squares ", dtype_name(dtype), " n ", n);
      // Squares of f32 or bf16 values are exact in double; only the order of the additions differs.
      CHECK(actual == doctest::Approx(expected).epsilon(1e-12));
      CHECK(ops::sum_of_squares(device_x) == actual);
      host.push_back(x);
      device.push_back(device_x.tensor());
      keep.push_back(device_x);
    }
  }
  const double expected = ops::global_l2_norm(host);
  const double actual = ops::global_l2_norm(device);
  CHECK(actual == doctest::Approx(expected).epsilon(1e-12));
  CHECK(ops::global_l2_norm(device) == actual);
  // Host and device tensors in one call.
  std::vector<Tensor> mixed{host[3], device[4], host[8], device[9]};
  const std::vector<Tensor> mixed_host{host[3], host[4], host[8], host[9]};
  CHECK(ops::global_l2_norm(mixed) == doctest::Approx(ops::global_l2_norm(mixed_host)).epsilon(1e-12));
  for (const DeviceTensor& tensor : keep) tensor.check_guard("sum_of_squares");
}
