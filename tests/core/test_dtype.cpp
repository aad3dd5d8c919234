#include "dsv3/core/dtype.hpp"

#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>

using namespace dsv3;

TEST_CASE("dtype sizes and names") {
  CHECK(dtype_size(DType::f32) == 4);
  CHECK(dtype_size(DType::f64) == 8);
  CHECK(dtype_size(DType::bf16) == 2);
  CHECK(dtype_size(DType::fp8_e4m3) == 1);
  CHECK(dtype_size(DType::i32) == 4);
  CHECK(dtype_size(DType::i64) == 8);
  CHECK(dtype_name(DType::fp8_e4m3) == "fp8_e4m3");
  CHECK_FALSE(is_floating(DType::i64));
}

TEST_CASE("bf16 rounds to nearest even and keeps NaN") {
  CHECK(f32_to_bf16(1.0f).bits == 0x3f80);
  // 1 + 2^-8 is exactly halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
  CHECK(f32_to_bf16(1.0f + 0x1p-8f).bits == 0x3f80);
  // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): rounds up.
  CHECK(f32_to_bf16(1.0f + 3 * 0x1p-8f).bits == 0x3f82);
  CHECK(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f).bits == 0x3f81);  // above halfway: up
  CHECK(bf16_to_f32(f32_to_bf16(-2.5f)) == -2.5f);
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
  CHECK(std::isinf(bf16_to_f32(f32_to_bf16(INFINITY))));
}

TEST_CASE("fp8 e4m3: every code decodes and re-encodes to itself") {
  for (int code = 0; code < 256; ++code) {
    const float value = fp8_e4m3_to_f32(fp8_e4m3{static_cast<std::uint8_t>(code)});
    if ((code & 0x7f) == 0x7f) {
      CHECK(std::isnan(value));
      continue;
    }
    CAPTURE(code);
    CHECK(f32_to_fp8_e4m3(value).bits == code);
  }
  CHECK(fp8_e4m3_to_f32(fp8_e4m3{0x7e}) == 448.0f);
  CHECK(fp8_e4m3_to_f32(fp8_e4m3{0x01}) == 0x1p-9f);  // smallest subnormal
  CHECK(fp8_e4m3_to_f32(fp8_e4m3{0x08}) == 0x1p-6f);  // smallest normal
}

TEST_CASE("fp8 e4m3: round to nearest even, saturate at ±448") {
  // Between 1 (mantissa 0) and 1.125 (mantissa 1): the midpoint ties to even (1), above it rounds up.
  CHECK(fp8_e4m3_to_f32(f32_to_fp8_e4m3(1.0625f)) == 1.0f);
  CHECK(fp8_e4m3_to_f32(f32_to_fp8_e4m3(1.0626f)) == 1.125f);
  // Between 1.125 (odd) and 1.25 (even): the midpoint goes to 1.25.
  CHECK(fp8_e4m3_to_f32(f32_to_fp8_e4m3(1.1875f)) == 1.25f);
  // Subnormal midpoint between 1 and 2 units of 2^-9 ties to 2 (even).
  CHECK(fp8_e4m3_to_f32(f32_to_fp8_e4m3(1.5f * 0x1p-9f)) == 2 * 0x1p-9f);
  CHECK(fp8_e4m3_to_f32(f32_to_fp8_e4m3(0.4f * 0x1p-9f)) == 0.0f);
  CHECK(fp8_e4m3_to_f32(f32_to_fp8_e4m3(1000.0f)) == 448.0f);
  CHECK(fp8_e4m3_to_f32(f32_to_fp8_e4m3(-1e30f)) == -448.0f);
  CHECK(fp8_e4m3_to_f32(f32_to_fp8_e4m3(464.0f)) == 448.0f);  // would round to 480, which e4m3 lacks
  CHECK(std::isnan(fp8_e4m3_to_f32(f32_to_fp8_e4m3(std::nanf("")))));
  CHECK(std::signbit(fp8_e4m3_to_f32(f32_to_fp8_e4m3(-0.0f))));
}
