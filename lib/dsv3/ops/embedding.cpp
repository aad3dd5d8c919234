#include "dsv3/ops/embedding.hpp"

#include "dsv3/ops/cpu/embedding.hpp"
#include "dsv3/ops/cuda/embedding.hpp"
#include "dsv3/ops/cuda_dispatch.hpp"

#include <vector>

namespace dsv3::ops {

namespace {

// table [V, D], ids i32/i64 of any shape, rows (y or dy) = ids.shape + [D].
void check_embedding(const char* op, const char* table_name, const Tensor& table, const char* rows_name,
                     const Tensor& rows, const Tensor& ids) {
  expect_float(op, table_name, table);
  expect_rank(op, table_name, table, 2);
  expect_index(op, "ids", ids);
  DSV3_CHECK(ids.rank() < Shape::kMaxRank, "{}: ids is {}, expected rank below {}", op, ids.describe(),
             Shape::kMaxRank);
  std::vector<std::int64_t> extents(ids.shape().extents().begin(), ids.shape().extents().end());
  extents.push_back(table.size(1));
  expect_shape(op, rows_name, rows, Shape(extents));
  expect_same_dtype(op, {&table, &rows});
  expect_same_device(op, {&table, &rows, &ids});
}

}  // namespace

void embedding_forward(const Tensor& y, const Tensor& table, const Tensor& ids, Stream stream) {
  const char* op = "embedding_forward";
  check_embedding(op, "table", table, "y", y, ids);
  if (table.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::embedding_forward(y.raw(), table.raw(), cuda_float(op, "table", table), ids.raw(),
                                                    cuda_index(op, "ids", ids), ids.numel(), table.size(0),
                                                    table.size(1), stream.handle));
  }
  cpu::embedding_forward(y, table, ids);
}

void embedding_backward(const Tensor& dtable, const Tensor& dy, const Tensor& ids, Stream stream) {
  const char* op = "embedding_backward";
  check_embedding(op, "dtable", dtable, "dy", dy, ids);
  if (dtable.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::embedding_backward(dtable.raw(), dy.raw(), cuda_float(op, "dtable", dtable),
                                                     ids.raw(), cuda_index(op, "ids", ids), ids.numel(), dtable.size(0),
                                                     dtable.size(1), stream.handle));
  }
  cpu::embedding_backward(dtable, dy, ids);
}

}  // namespace dsv3::ops
