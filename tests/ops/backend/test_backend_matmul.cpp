#include "dsv3/ops/matmul.hpp"

#include "backend_ops.hpp"

#include <doctest/doctest.h>

#include <array>
#include <vector>

using namespace dsv3;
using namespace dsv3::testing;
using namespace dsv3::testing::backend;

namespace {

// Inputs are bf16-exact, so the tensor cores' bf16 products are exact and f32 storage agrees with the CPU up to
// the summation order.
struct MatmulCase {
  std::int64_t batch;  // 0: rank 2
  bool shared_b;       // rank-2 b with rank-3 a and c
  std::int64_t m, n, k;
  bool transpose_a, transpose_b;
  double beta;
};

Shape operand(std::int64_t batch, std::int64_t rows, std::int64_t columns, bool transpose) {
  if (transpose) std::swap(rows, columns);
  return batch == 0 ? Shape{rows, columns} : Shape{batch, rows, columns};
}

}  // namespace

TEST_CASE("backend matmul: transposes, batches, a shared b, accumulation, odd and empty extents") {
  Rng rng(11);
  std::vector<MatmulCase> cases;
  for (const bool transpose_a : {false, true}) {
    for (const bool transpose_b : {false, true}) {
      cases.push_back({0, false, 33, 17, 65, transpose_a, transpose_b, 0.0});
      cases.push_back({3, false, 5, 129, 7, transpose_a, transpose_b, 1.0});
      cases.push_back({2, true, 9, 8, 31, transpose_a, transpose_b, 0.0});
    }
  }
  cases.push_back({0, false, 1, 1, 1, false, false, 0.0});
  cases.push_back({0, false, 256, 512, 384, false, true, 0.0});
  cases.push_back({0, false, 4, 6, 0, false, false, 0.0});  // k = 0: c = 0
  cases.push_back({0, false, 0, 6, 5, false, false, 0.0});  // nothing to compute
  for (const DType dtype : kDeviceFloatTypes) {
    for (const MatmulCase& c : cases) {
      const std::int64_t b_batch = c.shared_b ? 0 : c.batch;
      const Tensor a = random_representable(operand(c.batch, c.m, c.k, c.transpose_a), dtype, rng);
      const Tensor b = random_representable(operand(b_batch, c.k, c.n, c.transpose_b), dtype, rng);
      const Tensor c0 = random_representable(operand(c.batch, c.m, c.n, false), dtype, rng);
      const ops::GemmOptions options{.transpose_a = c.transpose_a, .transpose_b = c.transpose_b, .beta = c.beta};
      const Tensor expected = c0.clone();
      ops::matmul(expected, a, b, options);
      const DeviceTensor out = c.beta == 0.0 ? DeviceTensor::poisoned(c0.shape(), dtype)
                                             : DeviceTensor::upload(c0, dtype);
      ops::matmul(out, DeviceTensor::upload(a, dtype), DeviceTensor::upload(b, dtype), options);
      check_output(fmt::format("matmul {} a {} b {} beta {}", dtype_name(dtype), a.shape().to_string(),
                               b.shape().to_string(), c.beta),
                   out, expected, nmse_threshold(dtype));
    }
  }
}

TEST_CASE("backend linear: forward and backward, with and without dx") {
  Rng rng(12);
  for (const DType dtype : kDeviceFloatTypes) {
    for (const auto& [rows, in, out] : std::vector<std::array<std::int64_t, 3>>{{1, 1, 1}, {7, 33, 5}, {3 * 65, 256, 96}}) {
      const Tensor x = random_representable(Shape{rows, in}, dtype, rng);
      const Tensor w = random_representable(Shape{out, in}, dtype, rng);
      const Tensor dy = random_representable(Shape{rows, out}, dtype, rng);
      const Tensor dw0 = random_representable(Shape{out, in}, dtype, rng);
      const std::string where = fmt::format("{} x {} w {}", dtype_name(dtype), x.shape().to_string(),
                                            w.shape().to_string());

      const Tensor y = Tensor::empty(Shape{rows, out}, DType::f32);
      ops::linear_forward(y, x, w);
      const DeviceTensor device_y = DeviceTensor::poisoned(y.shape(), dtype);
      ops::linear_forward(device_y, DeviceTensor::upload(x, dtype), DeviceTensor::upload(w, dtype));
      check_output("linear_forward " + where, device_y, y, nmse_threshold(dtype));

      const Tensor dx = Tensor::empty(x.shape(), DType::f32), dw = dw0.clone();
      ops::linear_backward(dx, dw, dy, x, w);
      for (const bool with_dx : {true, false}) {
        const DeviceTensor device_dx = DeviceTensor::poisoned(x.shape(), dtype);
        const DeviceTensor device_dw = DeviceTensor::upload(dw0, dtype);
        ops::linear_backward(with_dx ? device_dx.tensor() : Tensor(), device_dw, DeviceTensor::upload(dy, dtype),
                             DeviceTensor::upload(x, dtype), DeviceTensor::upload(w, dtype));
        if (with_dx) check_output("linear_backward dx " + where, device_dx, dx, nmse_threshold(dtype));
        check_output("linear_backward dw " + where, device_dw, dw, nmse_threshold(dtype));
      }
    }
  }
}

TEST_CASE("backend grouped_linear: experts with no rows, one row, many rows") {
  Rng rng(13);
  const std::int64_t in = 72, out = 40;
  // Expert 0 and the last are empty, expert 2 has a single row.
  const std::vector<double> offset_values = {0, 0, 37, 38, 38, 101, 101};
  const std::int64_t experts = static_cast<std::int64_t>(offset_values.size()) - 1;
  const std::int64_t tokens = static_cast<std::int64_t>(offset_values.back());
  const Tensor offsets = from_values(Shape{experts + 1}, DType::i64, offset_values);
  for (const DType dtype : kDeviceFloatTypes) {
    const Tensor x = random_representable(Shape{tokens, in}, dtype, rng);
    const Tensor w = random_representable(Shape{experts, out, in}, dtype, rng);
    const Tensor dy = random_representable(Shape{tokens, out}, dtype, rng);
    const Tensor dw0 = random_representable(w.shape(), dtype, rng);
    const std::string where(dtype_name(dtype));

    const Tensor y = Tensor::empty(Shape{tokens, out}, DType::f32);
    ops::grouped_linear_forward(y, x, w, offsets);
    const DeviceTensor device_y = DeviceTensor::poisoned(y.shape(), dtype);
    ops::grouped_linear_forward(device_y, DeviceTensor::upload(x, dtype), DeviceTensor::upload(w, dtype), offsets);
    check_output("grouped_linear_forward " + where, device_y, y, nmse_threshold(dtype));

    const Tensor dx = Tensor::empty(x.shape(), DType::f32), dw = dw0.clone();
    ops::grouped_linear_backward(dx, dw, dy, x, w, offsets);
    const DeviceTensor device_dx = DeviceTensor::poisoned(x.shape(), dtype);
    const DeviceTensor device_dw = DeviceTensor::upload(dw0, dtype);
    ops::grouped_linear_backward(device_dx, device_dw, DeviceTensor::upload(dy, dtype), DeviceTensor::upload(x, dtype),
                                 DeviceTensor::upload(w, dtype), offsets);
    check_output("grouped_linear_backward dx " + where, device_dx, dx, nmse_threshold(dtype));
    // The empty experts' dw is untouched: NMSE over the whole tensor covers it with the accumulate start.
    check_output("grouped_linear_backward dw " + where, device_dw, dw, nmse_threshold(dtype));
  }
}

TEST_CASE("backend cublas_reference_matmul: the benchmarks' cuBLAS yardstick computes the same product") {
  Rng rng(14);
  for (const DType dtype : kDeviceFloatTypes) {
    for (const auto& [m, n, k] : std::vector<std::array<std::int64_t, 3>>{{1, 1, 1}, {33, 17, 65}, {256, 128, 96}}) {
      const Tensor a = random_representable(Shape{m, k}, dtype, rng), b = random_representable(Shape{k, n}, dtype, rng);
      const Tensor expected = Tensor::empty(Shape{m, n}, DType::f32);
      ops::matmul(expected, a, b);
      const DeviceTensor c = DeviceTensor::poisoned(Shape{m, n}, dtype);
      ops::cublas_reference_matmul(c, DeviceTensor::upload(a, dtype), DeviceTensor::upload(b, dtype));
      check_output(fmt::format("cublas_reference_matmul {} [{}, {}]·[{}, {}]", dtype_name(dtype), m, k, k, n), c,
                   expected, nmse_threshold(dtype));
    }
  }
  CHECK_THROWS_WITH(ops::cublas_reference_matmul(Tensor::empty(Shape{2, 2}, DType::f32),
                                                 Tensor::empty(Shape{2, 2}, DType::f32),
                                                 Tensor::empty(Shape{2, 2}, DType::f32)),
                    doctest::Contains("cuBLAS's reference needs CUDA tensors"));
}
