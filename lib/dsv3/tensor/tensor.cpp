#include "dsv3/tensor/tensor.hpp"

namespace dsv3 {

Storage::Storage(Device device, std::size_t bytes)
    : device_(device), bytes_(bytes), data_(device_allocate(device, bytes)) {}

Storage::~Storage() { device_free(device_, data_); }

Tensor::Tensor(std::shared_ptr<Storage> storage, std::size_t byte_offset, Shape shape, DType dtype)
    : storage_(std::move(storage)), byte_offset_(byte_offset), shape_(shape), dtype_(dtype) {
  DSV3_CHECK(storage_ != nullptr, "Tensor: null storage");
  DSV3_CHECK(byte_offset_ + nbytes() <= storage_->bytes(),
             "Tensor: {} at byte offset {} overruns its storage of {} bytes", describe(), byte_offset_,
             storage_->bytes());
}

Tensor Tensor::empty(Shape shape, DType dtype, Device device) {
  const std::size_t bytes = static_cast<std::size_t>(shape.numel()) * dtype_size(dtype);
  return Tensor(std::make_shared<Storage>(device, bytes), 0, shape, dtype);
}

Tensor Tensor::zeros(Shape shape, DType dtype, Device device) {
  Tensor tensor = empty(shape, dtype, device);
  tensor.zero();
  return tensor;
}

void Tensor::check_defined(const char* what) const {
  DSV3_CHECK(defined(), "Tensor::{}: the tensor is undefined", what);
}

Tensor Tensor::view(Shape shape) const {
  check_defined("view");
  DSV3_CHECK(shape.numel() == numel(), "Tensor::view: cannot view {} as {} ({} vs {} elements)", describe(),
             shape.to_string(), numel(), shape.numel());
  return Tensor(storage_, byte_offset_, shape, dtype_);
}

Tensor Tensor::rows(std::int64_t begin, std::int64_t end) const {
  check_defined("rows");
  DSV3_CHECK(rank() >= 1 && 0 <= begin && begin <= end && end <= size(0),
             "Tensor::rows: range [{}, {}) out of bounds for {}", begin, end, describe());
  Shape shape = shape_;
  shape[0] = end - begin;
  const std::size_t row_bytes = size(0) == 0 ? 0 : nbytes() / static_cast<std::size_t>(size(0));
  return Tensor(storage_, byte_offset_ + static_cast<std::size_t>(begin) * row_bytes, shape, dtype_);
}

Tensor Tensor::operator[](std::int64_t index) const {
  const Tensor row = rows(index, index + 1);
  const auto extents = shape_.extents().subspan(1);
  return row.view(Shape(extents));
}

Tensor Tensor::to(Device device) const {
  check_defined("to");
  Tensor result = empty(shape_, dtype_, device);
  result.copy_from(*this);
  return result;
}

void Tensor::copy_from(const Tensor& source) const {
  check_defined("copy_from");
  DSV3_CHECK(source.shape_ == shape_ && source.dtype_ == dtype_, "Tensor::copy_from: {} into {}",
             source.describe(), describe());
  device_copy(raw(), device(), source.raw(), source.device(), nbytes());
}

void Tensor::zero() const {
  check_defined("zero");
  device_zero(raw(), device(), nbytes());
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined";
  return fmt::format("{}{}@{}", dtype_name(dtype_), shape_.to_string(), device_name(device()));
}

}  // namespace dsv3
