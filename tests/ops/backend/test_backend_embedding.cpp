#include "dsv3/ops/embedding.hpp"

#include "backend_ops.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace dsv3;
using namespace dsv3::testing;
using namespace dsv3::testing::backend;

TEST_CASE("backend embedding: gather and deterministic scatter-add with repeated ids, i32 and i64 ids") {
  Rng rng(51);
  const std::int64_t vocabs[] = {1, 3, 1000};
  const std::int64_t dims[] = {1, 7, 192, 513};
  const Shape id_shapes[] = {Shape{1}, Shape{7}, Shape{2, 65}, Shape{600}};
  for (const DType dtype : kDeviceFloatTypes) {
    for (const std::int64_t vocab : vocabs) {
      for (const std::int64_t dim : dims) {
        for (const Shape& id_shape : id_shapes) {
          const DType index_dtype = id_shape.numel() % 2 == 0 ? DType::i64 : DType::i32;
          // Small vocabularies repeat ids many times; 1000 ids over 600 tokens repeat some.
          const Tensor ids = random_uniform(id_shape, index_dtype, rng, 0, static_cast<double>(vocab));
          std::vector<std::int64_t> row_extents(id_shape.extents().begin(), id_shape.extents().end());
          row_extents.push_back(dim);
          const Shape rows_shape(row_extents);
          const std::string where = fmt::format("{} table [{}, {}], {} ids {}", dtype_name(dtype), vocab, dim,
                                                dtype_name(index_dtype), id_shape.to_string());
          const Tensor table = random_representable(Shape{vocab, dim}, dtype, rng);
          const DeviceTensor device_ids = DeviceTensor::upload(ids);

          const Tensor expected_y = Tensor::empty(rows_shape, DType::f32);
          ops::embedding_forward(expected_y, table, ids);
          const DeviceTensor y = DeviceTensor::poisoned(rows_shape, dtype);
          ops::embedding_forward(y, DeviceTensor::upload(table, dtype), device_ids);
          check_output("embedding_forward " + where, y, expected_y, 0.0);  // a copy: exact

          const Tensor dy = random_representable(rows_shape, dtype, rng);
          const DeviceTensor device_dy = DeviceTensor::upload(dy, dtype);
          const Tensor expected_dtable = table.clone();
          ops::embedding_backward(expected_dtable, dy, ids);
          const DeviceTensor dtable = DeviceTensor::upload(table, dtype);
          ops::embedding_backward(dtable, device_dy, device_ids);
          check_output("embedding_backward " + where, dtable, expected_dtable, nmse_threshold(dtype));

          const DeviceTensor dtable_again = DeviceTensor::upload(table, dtype);
          ops::embedding_backward(dtable_again, device_dy, device_ids);
          check_output("embedding_backward rerun " + where, dtable_again, dtable.download(), 0.0);
        }
      }
    }
  }
}

TEST_CASE("backend embedding: an id outside the table is the CPU's error, and nothing is written") {
  Rng rng(52);
  const Tensor table = random_representable(Shape{10, 4}, DType::f32, rng);
  const Tensor rows = random_representable(Shape{3, 4}, DType::f32, rng);
  for (const DType index_dtype : {DType::i32, DType::i64}) {
    for (const std::vector<double>& bad : {std::vector<double>{0, 10, 2}, std::vector<double>{3, 1, -1}}) {
      const Tensor ids = from_values(Shape{3}, index_dtype, bad);
      const DeviceTensor device_ids = DeviceTensor::upload(ids);

      const std::string forward_error = cpu_error_message([&] { ops::embedding_forward(rows.clone(), table, ids); });
      const DeviceTensor y = DeviceTensor::upload(rows);
      CHECK_THROWS_WITH_AS(ops::embedding_forward(y, DeviceTensor::upload(table), device_ids), forward_error.c_str(),
                           dsv3::Error);
      check_output("embedding_forward refused", y, rows, 0.0);

      const std::string backward_error = cpu_error_message([&] { ops::embedding_backward(table.clone(), rows, ids); });
      const DeviceTensor dtable = DeviceTensor::upload(table);
      CHECK_THROWS_WITH_AS(ops::embedding_backward(dtable, DeviceTensor::upload(rows), device_ids),
                           backward_error.c_str(), dsv3::Error);
      check_output("embedding_backward refused", dtable, table, 0.0);
    }
  }
}
