// Tensor: a typed, shaped, row-major contiguous view into reference-counted device memory.
// Views (reshape, row ranges, single rows) share the storage; nothing is ever strided, so every
// op can treat a tensor as one flat array of numel() elements.
#pragma once

#include "dsv3/core/dtype.hpp"
#include "dsv3/core/error.hpp"
#include "dsv3/tensor/device_memory.hpp"
#include "dsv3/tensor/shape.hpp"

#include <cstddef>
#include <memory>
#include <string>

namespace dsv3 {

class Storage {
 public:
  Storage(Device device, std::size_t bytes);
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage();

  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  Device device_;
  std::size_t bytes_;
  void* data_;
};

class Tensor {
 public:
  Tensor() = default;  // undefined: no storage
  Tensor(std::shared_ptr<Storage> storage, std::size_t byte_offset, Shape shape, DType dtype);

  static Tensor empty(Shape shape, DType dtype, Device device = Device::cpu);
  static Tensor zeros(Shape shape, DType dtype, Device device = Device::cpu);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  std::int64_t size(int axis) const { return shape_[axis]; }
  std::int64_t numel() const { return shape_.numel(); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::cpu; }

  void* raw() const { return static_cast<std::byte*>(storage_->data()) + byte_offset_; }
  template <class T>
  T* data() const {
    DSV3_CHECK(dtype_of<T> == dtype_, "Tensor::data: tensor {} read as {}", describe(), dtype_name(dtype_of<T>));
    return static_cast<T*>(raw());
  }

  // Same elements, another shape of equal numel.
  Tensor view(Shape shape) const;
  // Rows [begin, end) along axis 0.
  Tensor rows(std::int64_t begin, std::int64_t end) const;
  // Row `index` along axis 0, with that axis dropped.
  Tensor operator[](std::int64_t index) const;

  // Copies of the data.
  Tensor to(Device device) const;
  Tensor clone() const { return to(device()); }
  // Element-wise copy from a tensor of the same shape and dtype, on any device. Like the ops, these write
  // through a const handle: constness is that of the view, not of the elements.
  void copy_from(const Tensor& source) const;
  void zero() const;

  bool shares_storage_with(const Tensor& other) const { return storage_ == other.storage_; }
  // The allocation behind the view, to lay other views over the same bytes (Tensor(storage, offset, …)).
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  std::string describe() const;  // "f32[2, 3]@cpu"

 private:
  void check_defined(const char* what) const;

  std::shared_ptr<Storage> storage_;
  std::size_t byte_offset_ = 0;
  Shape shape_;
  DType dtype_ = DType::f32;
};

}  // namespace dsv3
