// Calls a function template with the C++ type of a CPU compute dtype (f32 → float, f64 → double).
#pragma once

#include "dsv3/core/dtype.hpp"
#include "dsv3/core/error.hpp"

namespace dsv3::ops::cpu {

template <class Function>
void with_float_type(DType dtype, const char* op, Function&& function) {
  switch (dtype) {
    case DType::f32: function.template operator()<float>(); return;
    case DType::f64: function.template operator()<double>(); return;
    default: fail("{}: the CPU backend computes in f32 or f64, not {}", op, dtype_name(dtype));
  }
}

template <class Function>
void with_index_type(DType dtype, const char* op, Function&& function) {
  switch (dtype) {
    case DType::i32: function.template operator()<std::int32_t>(); return;
    case DType::i64: function.template operator()<std::int64_t>(); return;
    default: fail("{}: index tensors are i32 or i64, not {}", op, dtype_name(dtype));
  }
}

}  // namespace dsv3::ops::cpu
