#include "dsv3/ops/elementwise.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>

using namespace dsv3;
using namespace dsv3::testing;

namespace {

const std::vector<Shape> kShapes{Shape{300, 257}, Shape{1, 1}, Shape{128, 128}, Shape{129, 1}, Shape{2, 3, 5},
                                 Shape{0, 4}};
const std::vector<DType> kFloatDTypes{DType::f32, DType::f64, DType::bf16, DType::fp8_e4m3};

Tensor converted(const Tensor& src, DType dtype) {
  Tensor dst = Tensor::empty(src.shape(), dtype);
  ops::convert(dst, src);
  return dst;
}

// A bf16 or fp8 e4m3 tensor [codes.size()] holding the given bit patterns.
Tensor from_codes(DType dtype, const std::vector<std::uint32_t>& codes) {
  Tensor tensor = Tensor::empty(Shape{static_cast<std::int64_t>(codes.size())}, dtype);
  const std::size_t size = dtype_size(dtype);
  for (std::size_t i = 0; i < codes.size(); ++i) {
    std::memcpy(static_cast<std::byte*>(tensor.raw()) + i * size, &codes[i], size);  // the low bytes (little-endian)
  }
  return tensor;
}

}  // namespace

TEST_CASE("convert between float dtypes matches the scalar conversions, element by element") {
  Rng rng(1);
  for (DType from : kFloatDTypes) {
    for (DType to : kFloatDTypes) {
      // f64 → bf16/fp8 rounds once from f64, unlike the f32 scalar conversions: tested on its own below.
      if (from == DType::f64 && (to == DType::bf16 || to == DType::fp8_e4m3)) continue;
      for (const Shape& shape : kShapes) {
        CAPTURE(dtype_name(from));
        CAPTURE(dtype_name(to));
        CAPTURE(shape);
        // stddev 200: a good share beyond fp8's ±448, to exercise saturation.
        const Tensor src = random_normal(shape, from, rng, 200.0);
        // from_values stores each (exact) source value with the scalar conversion of dtype.hpp.
        DSV3_CHECK_CLOSE(compare(converted(src, to), from_values(shape, to, to_vector(src)), 0.0, 0.0));
      }
    }
  }
}

TEST_CASE("convert f64 to bf16 and fp8 e4m3 rounds once to nearest even, not twice through f32") {
  // Around the midpoint of two neighbouring codes lo < hi (in magnitude), at a distance far below f32 resolution:
  // f32 would first round all three inputs onto the midpoint, and then the tie would go to the even code.
  Rng rng(2);
  struct Format {
    DType dtype;
    std::uint32_t sign_bit, largest_finite;
  };
  for (const Format& format : {Format{DType::bf16, 0x8000, 0x7f7f}, Format{DType::fp8_e4m3, 0x80, 0x7e}}) {
    CAPTURE(dtype_name(format.dtype));
    std::uniform_int_distribution<std::uint32_t> magnitudes(0, format.largest_finite - 1);
    std::vector<double> inputs;
    std::vector<std::uint32_t> expected;
    for (int i = 0; i < 500; ++i) {
      const std::uint32_t lo = ((rng() & 1) ? format.sign_bit : 0) | magnitudes(rng);
      const std::uint32_t hi = lo + 1;  // the next code away from zero
      const Tensor neighbours = from_codes(format.dtype, {lo, hi});
      const double midpoint = (value_at(neighbours, 0) + value_at(neighbours, 1)) / 2;  // exact in f64
      const double nudge = (value_at(neighbours, 1) - value_at(neighbours, 0)) * 0x1p-20;
      inputs.insert(inputs.end(), {midpoint - nudge, midpoint, midpoint + nudge});
      expected.insert(expected.end(), {lo, lo % 2 == 0 ? lo : hi, hi});
    }
    const Tensor src = from_values(Shape{static_cast<std::int64_t>(inputs.size())}, DType::f64, inputs);
    DSV3_CHECK_CLOSE(compare(converted(src, format.dtype), from_codes(format.dtype, expected), 0.0, 0.0));
  }
}

TEST_CASE("convert round trips: f32 → f64 → f32 is exact; f32 → bf16 → f32 is f32_to_bf16") {
  Rng rng(3);
  Tensor x = random_normal(Shape{1000}, DType::f32, rng, 1e3);
  const float specials[] = {0.0f, -0.0f, 1e-40f, -1e-45f, std::numeric_limits<float>::max(),
                            std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
  std::memcpy(x.data<float>(), specials, sizeof(specials));

  const Tensor back = converted(converted(x, DType::f64), DType::f32);
  CHECK(std::memcmp(back.raw(), x.raw(), x.nbytes()) == 0);

  const Tensor through_bf16 = converted(converted(x, DType::bf16), DType::f32);
  const Tensor expected = Tensor::empty(x.shape(), DType::f32);
  for (std::int64_t i = 0; i < x.numel(); ++i) expected.data<float>()[i] = bf16_to_f32(f32_to_bf16(x.data<float>()[i]));
  CHECK(std::memcmp(through_bf16.raw(), expected.raw(), x.nbytes()) == 0);  // compare() fails inf against inf

  const Tensor nan = from_values(Shape{1}, DType::f32, {std::nan("")});
  for (DType dtype : kFloatDTypes) CHECK(std::isnan(converted(converted(nan, dtype), DType::f32).data<float>()[0]));
}

TEST_CASE("convert to fp8 e4m3 saturates at ±448; f64 beyond f32 range overflows bf16 to infinity") {
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> large{448.0, 464.0, 465.0, 500.0, 1e30, inf, -449.0, -1e30, -inf};
  const std::vector<double> saturated{448, 448, 448, 448, 448, 448, -448, -448, -448};
  const Shape shape{static_cast<std::int64_t>(large.size())};
  for (DType from : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(from));
    const Tensor src = from_values(shape, from, large);
    CHECK(to_vector(converted(src, DType::fp8_e4m3)) == saturated);
  }
  const Tensor huge = from_values(Shape{2}, DType::f64, {1e300, -1e300});
  CHECK(to_vector(converted(huge, DType::bf16)) == std::vector<double>{inf, -inf});
  CHECK(to_vector(converted(huge, DType::f32)) == std::vector<double>{inf, -inf});
}

TEST_CASE("convert between index dtypes; i64 → i32 out of range names the element, leaves dst as it was") {
  const std::int32_t lowest = std::numeric_limits<std::int32_t>::min();
  const std::int32_t highest = std::numeric_limits<std::int32_t>::max();
  const Tensor narrow = from_values(Shape{2, 3}, DType::i32, {0, -1, 7, lowest, highest, -100});
  const Tensor wide = converted(narrow, DType::i64);
  CHECK(to_vector(wide) == to_vector(narrow));
  CHECK(to_vector(converted(wide, DType::i32)) == to_vector(narrow));

  Tensor out_of_range = from_values(Shape{4}, DType::i64, {1, 2, 3, 4});
  out_of_range.data<std::int64_t>()[2] = std::int64_t{1} << 40;
  const Tensor dst = from_values(Shape{4}, DType::i32, {9, 9, 9, 9});
  CHECK_THROWS_WITH_AS(ops::convert(dst, out_of_range),
                       doctest::Contains("convert: element 2 of i64[4]@cpu is 1099511627776, outside the range of i32"),
                       dsv3::Error);
  CHECK(to_vector(dst) == std::vector<double>{9, 9, 9, 9});
}

TEST_CASE("round_to_bf16 rounds each f32 to bf16 precision, in place too") {
  Rng rng(4);
  for (const Shape& shape : kShapes) {
    CAPTURE(shape);
    const Tensor x = random_normal(shape, DType::f32, rng, 10.0);
    const Tensor expected = Tensor::empty(shape, DType::f32);
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      expected.data<float>()[i] = bf16_to_f32(f32_to_bf16(x.data<float>()[i]));
    }
    const Tensor y = Tensor::empty(shape, DType::f32);
    ops::round_to_bf16(y, x);
    DSV3_CHECK_CLOSE(compare(y, expected, 0.0, 0.0));
    ops::round_to_bf16(x, x);
    DSV3_CHECK_CLOSE(compare(x, expected, 0.0, 0.0));
  }
}

TEST_CASE("fill, add, axpy and scale match a scalar loop; add may write over either input") {
  Rng rng(5);
  for (DType dtype : {DType::f32, DType::f64}) {
    // axpy rounds once or twice (an FMA or not), relative to the terms, which may nearly cancel.
    const double tolerance = dtype == DType::f32 ? 1e-6 : 1e-15;
    for (const Shape& shape : kShapes) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(shape);
      const Tensor a = random_uniform(shape, dtype, rng);
      const Tensor b = random_uniform(shape, dtype, rng);
      const std::vector<double> av = to_vector(a), bv = to_vector(b);
      const double alpha = -0.375;
      std::vector<double> sum(av.size()), axpy(av.size()), scaled(av.size());
      for (std::size_t i = 0; i < av.size(); ++i) {
        sum[i] = av[i] + bv[i];  // exact in f64, so rounding it to dtype is what a dtype addition gives
        axpy[i] = bv[i] + alpha * av[i];
        scaled[i] = alpha * av[i];
      }

      const Tensor y = Tensor::empty(shape, dtype);
      ops::fill(y, 2.5);
      DSV3_CHECK_CLOSE(compare(y, from_values(shape, dtype, std::vector<double>(av.size(), 2.5)), 0.0, 0.0));
      ops::add(y, a, b);
      DSV3_CHECK_CLOSE(compare(y, from_values(shape, dtype, sum), 0.0, 0.0));

      const Tensor into_a = a.clone(), into_b = b.clone();
      ops::add(into_a, into_a, b);
      ops::add(into_b, a, into_b);
      DSV3_CHECK_CLOSE(compare(into_a, from_values(shape, dtype, sum), 0.0, 0.0));
      DSV3_CHECK_CLOSE(compare(into_b, from_values(shape, dtype, sum), 0.0, 0.0));

      const Tensor accumulated = b.clone();
      ops::axpy(accumulated, alpha, a);
      DSV3_CHECK_CLOSE(compare(accumulated, from_values(shape, dtype, axpy), tolerance, tolerance));
      const Tensor rescaled = a.clone();
      ops::scale(rescaled, alpha);
      DSV3_CHECK_CLOSE(compare(rescaled, from_values(shape, dtype, scaled), 0.0, 0.0));
    }
  }
}

TEST_CASE("elementwise ops reject mismatched shapes and dtypes with the op and tensors in the message") {
  const Tensor a = Tensor::zeros(Shape{2, 3}, DType::f32);
  const Tensor b = Tensor::zeros(Shape{3, 2}, DType::f32);
  const Tensor a64 = Tensor::zeros(Shape{2, 3}, DType::f64);
  const Tensor ids = Tensor::zeros(Shape{2, 3}, DType::i64);
  CHECK_THROWS_WITH_AS(ops::convert(b, a), doctest::Contains("convert: dst is f32[3, 2]@cpu, expected shape [2, 3]"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::convert(ids, a),
                       doctest::Contains("convert: cannot convert src f32[2, 3]@cpu to dst i64[2, 3]@cpu"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::convert(a, ids), doctest::Contains("float and index dtypes do not mix"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::round_to_bf16(a64, a64),
                       doctest::Contains("round_to_bf16: x is f64[2, 3]@cpu, expected dtype f32"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::round_to_bf16(a64, a), doctest::Contains("round_to_bf16: tensors of different dtypes"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::fill(ids, 1.0), doctest::Contains("fill: y is i64[2, 3]@cpu, expected f32 or f64"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::add(a, a, b), doctest::Contains("add: b is f32[3, 2]@cpu, expected shape [2, 3]"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::add(a64, a, a), doctest::Contains("add: tensors of different dtypes"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::add(a, Tensor(), a), doctest::Contains("add: argument a is undefined"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::axpy(b, 1.0, a), doctest::Contains("axpy: y is f32[3, 2]@cpu, expected shape [2, 3]"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::axpy(a, 1.0, a64), doctest::Contains("axpy: tensors of different dtypes"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::scale(Tensor::zeros(Shape{2}, DType::bf16), 2.0),
                       doctest::Contains("scale: y is bf16[2]@cpu, expected f32 or f64"), dsv3::Error);
}
