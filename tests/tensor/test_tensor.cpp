#include "dsv3/tensor/arena.hpp"
#include "dsv3/tensor/tensor.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

#include <cstdint>

using namespace dsv3;

TEST_CASE("shape: rank, extents, negative axes, limits") {
  const Shape shape{2, 3, 4};
  CHECK(shape.rank() == 3);
  CHECK(shape.numel() == 24);
  CHECK(shape[-1] == 4);
  CHECK(shape.to_string() == "[2, 3, 4]");
  CHECK(Shape{}.numel() == 1);
  CHECK(Shape{1, 2, 3, 4, 5}.rank() == 5);
  CHECK_THROWS_WITH_AS(Shape({1, 2, 3, 4, 5, 6}), doctest::Contains("rank 6 exceeds the maximum 5"), Error);
  CHECK_THROWS_WITH_AS(shape[3], doctest::Contains("axis 3 out of range for shape [2, 3, 4]"), Error);
  CHECK_THROWS_AS(Shape({2, -1}), Error);
}

TEST_CASE("tensor: allocation is aligned; views share storage; rows and single rows") {
  Tensor t = Tensor::zeros(Shape{4, 3}, DType::f32);
  CHECK(reinterpret_cast<std::uintptr_t>(t.raw()) % kHostAlignment == 0);
  for (int i = 0; i < 12; ++i) t.data<float>()[i] = static_cast<float>(i);
  const Tensor v = t.view(Shape{2, 6});
  CHECK(v.shares_storage_with(t));
  CHECK(v.data<float>()[7] == 7.0f);
  const Tensor middle = t.rows(1, 3);
  CHECK(middle.shape() == Shape{2, 3});
  CHECK(middle.data<float>()[0] == 3.0f);
  const Tensor row = t[2];
  CHECK(row.shape() == Shape{3});
  CHECK(row.data<float>()[1] == 7.0f);
  middle.data<float>()[0] = -1.0f;  // a write through a view is seen by the parent
  CHECK(t.data<float>()[3] == -1.0f);
  const Tensor copy = t.clone();
  CHECK_FALSE(copy.shares_storage_with(t));
  CHECK(copy.data<float>()[3] == -1.0f);
  CHECK(Tensor::empty(Shape{0, 5}, DType::f64).numel() == 0);
}

TEST_CASE("tensor: misuse gives errors that describe the tensor") {
  const Tensor t = Tensor::zeros(Shape{4, 3}, DType::f32);
  CHECK_THROWS_WITH_AS(t.view(Shape{5}), doctest::Contains("cannot view f32[4, 3]@cpu as [5]"), Error);
  CHECK_THROWS_WITH_AS(t.data<double>(), doctest::Contains("f32[4, 3]@cpu read as f64"), Error);
  CHECK_THROWS_WITH_AS(t.rows(2, 5), doctest::Contains("range [2, 5) out of bounds"), Error);
  CHECK_THROWS_WITH_AS(Tensor().view(Shape{1}), doctest::Contains("undefined"), Error);
  Tensor other = Tensor::zeros(Shape{3, 4}, DType::f32);
  CHECK_THROWS_WITH_AS(other.copy_from(t), doctest::Contains("f32[4, 3]@cpu into f32[3, 4]@cpu"), Error);
  if (!cuda_available()) {
    CHECK_THROWS_AS(Tensor::empty(Shape{2}, DType::f32, Device::cuda), Error);
  }
}

TEST_CASE("arena: tensors are aligned, disjoint, zeroed and inside one flat buffer") {
  const std::int64_t capacity = Arena::padded_numel(10, DType::f32) + Arena::padded_numel(70, DType::f32);
  CHECK(Arena::padded_numel(10, DType::f32) == 64);
  CHECK(Arena::padded_numel(64, DType::f32) == 64);
  CHECK(Arena::padded_numel(65, DType::f32) == 128);
  Arena arena(capacity, DType::f32);
  const Tensor a = arena.take(Shape{2, 5});
  const Tensor b = arena.take(Shape{7, 10});
  CHECK(a.shares_storage_with(arena.flat()));
  CHECK(b.shares_storage_with(arena.flat()));
  CHECK(reinterpret_cast<std::uintptr_t>(b.raw()) % Arena::kAlignmentBytes == 0);
  CHECK(static_cast<float*>(b.raw()) - static_cast<float*>(a.raw()) == 64);
  CHECK(arena.used() == capacity);
  for (double value : testing::to_vector(b)) CHECK(value == 0.0);
  b.data<float>()[69] = 5.0f;
  CHECK(arena.flat().data<float>()[64 + 69] == 5.0f);
  CHECK_THROWS_WITH_AS(arena.take(Shape{1}), doctest::Contains("does not fit"), Error);
}
