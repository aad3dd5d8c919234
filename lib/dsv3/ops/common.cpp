#include "dsv3/ops/common.hpp"

#include "dsv3/ops/cuda_dispatch.hpp"

namespace dsv3::ops {

void expect_defined(const char* op, const char* name, const Tensor& tensor) {
  DSV3_CHECK(tensor.defined(), "{}: argument {} is undefined", op, name);
}

void expect_shape(const char* op, const char* name, const Tensor& tensor, const Shape& expected) {
  expect_defined(op, name, tensor);
  DSV3_CHECK(tensor.shape() == expected, "{}: {} is {}, expected shape {}", op, name, tensor.describe(),
             expected.to_string());
}

void expect_rank(const char* op, const char* name, const Tensor& tensor, int rank) {
  expect_defined(op, name, tensor);
  DSV3_CHECK(tensor.rank() == rank, "{}: {} is {}, expected rank {}", op, name, tensor.describe(), rank);
}

void expect_dtype(const char* op, const char* name, const Tensor& tensor, DType dtype) {
  expect_defined(op, name, tensor);
  DSV3_CHECK(tensor.dtype() == dtype, "{}: {} is {}, expected dtype {}", op, name, tensor.describe(),
             dtype_name(dtype));
}

void expect_float(const char* op, const char* name, const Tensor& tensor) {
  expect_defined(op, name, tensor);
  if (tensor.device() == Device::cuda) {
    DSV3_CHECK(tensor.dtype() == DType::f32 || tensor.dtype() == DType::bf16, "{}: {} is {}, expected f32 or bf16",
               op, name, tensor.describe());
    return;
  }
  DSV3_CHECK(tensor.dtype() == DType::f32 || tensor.dtype() == DType::f64, "{}: {} is {}, expected f32 or f64", op,
             name, tensor.describe());
}

void expect_index(const char* op, const char* name, const Tensor& tensor) {
  expect_defined(op, name, tensor);
  DSV3_CHECK(tensor.dtype() == DType::i32 || tensor.dtype() == DType::i64, "{}: {} is {}, expected i32 or i64", op,
             name, tensor.describe());
}

void expect_on_host(const char* op, const char* name, const Tensor& tensor) {
  expect_defined(op, name, tensor);
  DSV3_CHECK(tensor.device() == Device::cpu, "{}: {} is {}, expected a host (cpu) tensor", op, name,
             tensor.describe());
}

void expect_same_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor* tensor : tensors) {
    if (!tensor->defined()) continue;
    if (first == nullptr) {
      first = tensor;
      continue;
    }
    DSV3_CHECK(tensor->device() == first->device(), "{}: tensors on different devices ({} and {})", op,
               first->describe(), tensor->describe());
  }
}

void expect_same_dtype(const char* op, std::initializer_list<const Tensor*> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor* tensor : tensors) {
    if (!tensor->defined()) continue;
    if (first == nullptr) {
      first = tensor;
      continue;
    }
    DSV3_CHECK(tensor->dtype() == first->dtype(), "{}: tensors of different dtypes ({} and {})", op,
               first->describe(), tensor->describe());
  }
}

cuda::Float cuda_float(const char* op, const char* name, const Tensor& tensor) {
  expect_float(op, name, tensor);
  return tensor.dtype() == DType::f32 ? cuda::Float::f32 : cuda::Float::bf16;
}

cuda::Index cuda_index(const char* op, const char* name, const Tensor& tensor) {
  expect_index(op, name, tensor);
  return tensor.dtype() == DType::i32 ? cuda::Index::i32 : cuda::Index::i64;
}

void synchronize(Device device) {
  if (device == Device::cuda) DSV3_ON_CUDA("synchronize", cuda::synchronize(nullptr, "synchronize"));
}

void unsupported_device(const char* op, Device device) {
  fail("{}: no {} implementation in this build", op, device_name(device));
}

}  // namespace dsv3::ops
