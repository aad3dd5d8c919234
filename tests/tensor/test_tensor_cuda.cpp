// Runs where a GPU is visible (ctest label gpu): tensors round-trip through device memory unchanged.
#include "dsv3/tensor/tensor.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

using namespace dsv3;

TEST_CASE("a tensor copied to the GPU and back is bit-identical") {
  REQUIRE_MESSAGE(cuda_available(), "no GPU visible: run this test (label gpu) on a machine with one");
  testing::Rng rng(7);
  const Tensor host = testing::random_uniform(Shape{37, 129}, DType::f32, rng);
  const Tensor device = host.to(Device::cuda);
  CHECK(device.device() == Device::cuda);
  const Tensor back = device.to(Device::cpu);
  DSV3_CHECK_CLOSE(testing::compare(back, host, 0.0, 0.0));
  Tensor zeros = Tensor::zeros(Shape{5}, DType::f64, Device::cuda);
  const Tensor zeros_host = zeros.to(Device::cpu);
  for (double value : testing::to_vector(zeros_host)) CHECK(value == 0.0);
}
