// What every op shares: the stream argument, argument checks that name the op and the tensors, and the
// device dispatch that the CUDA backend plugs into.
#pragma once

#include "dsv3/tensor/tensor.hpp"

#include <initializer_list>

namespace dsv3::ops {

// A CUDA stream for ops on GPU tensors (nullptr = the default stream); CPU ops run synchronously and ignore it.
struct Stream {
  void* handle = nullptr;
};

// Argument checks. Each throws dsv3::Error naming the op, the argument and its dtype/shape/device.
void expect_defined(const char* op, const char* name, const Tensor& tensor);
void expect_shape(const char* op, const char* name, const Tensor& tensor, const Shape& expected);
void expect_rank(const char* op, const char* name, const Tensor& tensor, int rank);
void expect_dtype(const char* op, const char* name, const Tensor& tensor, DType dtype);
// The compute dtypes: f32 or f64 on the CPU (f64 for gradient checks), f32 or bf16 on CUDA.
void expect_float(const char* op, const char* name, const Tensor& tensor);
void expect_index(const char* op, const char* name, const Tensor& tensor);  // i32 or i64
void expect_on_host(const char* op, const char* name, const Tensor& tensor);
// All defined tensors of the list are on the same device as the first one.
void expect_same_device(const char* op, std::initializer_list<const Tensor*> tensors);
// All defined tensors of the list have the dtype of the first one.
void expect_same_dtype(const char* op, std::initializer_list<const Tensor*> tensors);

// Blocks the host until the ops queued on `device` have run (a no-op on the CPU, whose ops are synchronous), and
// reports a fault of an earlier CUDA kernel as an error. For timings and for tests; the ops never need it.
void synchronize(Device device);

// Thrown by an op asked to run on a device whose backend does not implement it.
[[noreturn]] void unsupported_device(const char* op, Device device);

}  // namespace dsv3::ops
