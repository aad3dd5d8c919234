// Element types of dsv3 tensors and the scalar conversions between them.
// f64 exists for finite-difference gradient checks on the CPU; bf16 and fp8 e4m3 are storage formats
// (the CPU reference computes in f32 or f64 and converts on load and store).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace dsv3 {

enum class DType : std::uint8_t { f32, f64, bf16, fp8_e4m3, i32, i64 };

// Storage types for the two narrow float formats, so Tensor::data<T>() can check the dtype.
struct bf16 {
  std::uint16_t bits;
};
struct fp8_e4m3 {
  std::uint8_t bits;
};

std::size_t dtype_size(DType dtype);
std::string_view dtype_name(DType dtype);
bool is_floating(DType dtype);

template <class T>
struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::f32; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::f64; };
template <> struct DTypeOf<bf16> { static constexpr DType value = DType::bf16; };
template <> struct DTypeOf<fp8_e4m3> { static constexpr DType value = DType::fp8_e4m3; };
template <> struct DTypeOf<std::int32_t> { static constexpr DType value = DType::i32; };
template <> struct DTypeOf<std::int64_t> { static constexpr DType value = DType::i64; };
template <class T>
inline constexpr DType dtype_of = DTypeOf<T>::value;

// bf16: the upper 16 bits of an IEEE f32, rounded to nearest even; NaN stays NaN.
bf16 f32_to_bf16(float x);
float bf16_to_f32(bf16 x);

// fp8 e4m3 ("fn" variant: bias 7, no infinities, 0x7f/0xff are NaN, largest finite 448).
// Conversion rounds to nearest even and saturates to ±448.
inline constexpr float kFp8E4m3Max = 448.0f;
fp8_e4m3 f32_to_fp8_e4m3(float x);
float fp8_e4m3_to_f32(fp8_e4m3 x);

}  // namespace dsv3
