#include "dsv3/core/dtype.hpp"

#include "dsv3/core/error.hpp"

#include <array>
#include <bit>
#include <cmath>

namespace dsv3 {

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::fp8_e4m3: return 1;
    case DType::i32: return 4;
    case DType::i64: return 8;
  }
  fail("dtype_size: unknown dtype {}", static_cast<int>(dtype));
}

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::fp8_e4m3: return "fp8_e4m3";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
  }
  return "unknown";
}

bool is_floating(DType dtype) { return dtype != DType::i32 && dtype != DType::i64; }

bf16 f32_to_bf16(float x) {
  std::uint32_t bits = std::bit_cast<std::uint32_t>(x);
  if (std::isnan(x)) return bf16{static_cast<std::uint16_t>((bits >> 16) | 0x40)};  // keep it a quiet NaN
  const std::uint32_t lsb = (bits >> 16) & 1u;
  bits += 0x7fffu + lsb;  // round to nearest, ties to even
  return bf16{static_cast<std::uint16_t>(bits >> 16)};
}

float bf16_to_f32(bf16 x) { return std::bit_cast<float>(static_cast<std::uint32_t>(x.bits) << 16); }

namespace {

// Round |x| to an e4m3 code (sign excluded): 3 mantissa bits, exponent bias 7, subnormals below 2^-6.
std::uint8_t fp8_e4m3_magnitude_code(float a) {
  if (a >= kFp8E4m3Max) return 0x7e;  // saturate
  if (a < 0x1p-6f) {
    // Subnormal range: multiples of 2^-9; a result of 8 units is the smallest normal, code 0x08, as wanted.
    return static_cast<std::uint8_t>(std::nearbyint(a * 0x1p9f));
  }
  int exponent = 0;
  const float fraction = std::frexp(a, &exponent);  // a = fraction * 2^exponent, fraction in [0.5, 1)
  // a = (1 + m/8) * 2^(exponent-1); m = (2*fraction - 1) * 8 is exact before rounding.
  int mantissa = static_cast<int>(std::nearbyint((2.0f * fraction - 1.0f) * 8.0f));
  int biased = exponent - 1 + 7;
  if (mantissa == 8) {
    mantissa = 0;
    ++biased;
  }
  const int code = (biased << 3) | mantissa;
  return static_cast<std::uint8_t>(code > 0x7e ? 0x7e : code);
}

std::array<float, 256> make_fp8_e4m3_table() {
  std::array<float, 256> table{};
  for (int code = 0; code < 256; ++code) {
    const int exponent = (code >> 3) & 0xf;
    const int mantissa = code & 0x7;
    float magnitude;
    if (exponent == 0xf && mantissa == 0x7) {
      magnitude = std::nanf("");
    } else if (exponent == 0) {
      magnitude = std::ldexp(static_cast<float>(mantissa), -9);
    } else {
      magnitude = std::ldexp(1.0f + static_cast<float>(mantissa) / 8.0f, exponent - 7);
    }
    table[code] = (code & 0x80) ? -magnitude : magnitude;
  }
  return table;
}

const std::array<float, 256> kFp8E4m3Table = make_fp8_e4m3_table();

}  // namespace

fp8_e4m3 f32_to_fp8_e4m3(float x) {
  if (std::isnan(x)) return fp8_e4m3{0x7f};
  const std::uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  return fp8_e4m3{static_cast<std::uint8_t>(sign | fp8_e4m3_magnitude_code(std::fabs(x)))};
}

float fp8_e4m3_to_f32(fp8_e4m3 x) { return kFp8E4m3Table[x.bits]; }

}  // namespace dsv3
