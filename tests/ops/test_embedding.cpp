#include "dsv3/ops/embedding.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>

using namespace dsv3;
using namespace dsv3::testing;

namespace {

// ids.shape + [D]
Shape rows_shape(const Tensor& ids, std::int64_t dim) {
  std::vector<std::int64_t> extents(ids.shape().extents().begin(), ids.shape().extents().end());
  extents.push_back(dim);
  return Shape(extents);
}

// y[i, j] = table[ids[i], j], by the definition, in f64.
Tensor naive_embedding(const Tensor& table, const Tensor& ids) {
  const std::int64_t dim = table.size(1);
  Tensor y = Tensor::empty(rows_shape(ids, dim), DType::f64);
  for (std::int64_t i = 0; i < ids.numel(); ++i) {
    const auto id = static_cast<std::int64_t>(value_at(ids, i));
    for (std::int64_t j = 0; j < dim; ++j) y.data<double>()[i * dim + j] = value_at(table, id * dim + j);
  }
  return y;
}

}  // namespace

TEST_CASE("embedding_forward gathers table rows for i32 and i64 ids of any rank, both dtypes") {
  Rng rng(1);
  for (DType dtype : {DType::f32, DType::f64}) {
    for (DType index : {DType::i32, DType::i64}) {
      for (auto [vocab, dim, ids_shape] :
           {std::tuple{1, 1, Shape{3}}, {11, 7, Shape{2, 5}}, {50, 130, Shape{3, 1, 9}}}) {
        INFO("V ", vocab, " D ", dim, " ids ", ids_shape.to_string(), " ", std::string(dtype_name(dtype)), " ",
             std::string(dtype_name(index)));
        const Tensor table = random_uniform(Shape{vocab, dim}, dtype, rng);
        const Tensor ids = random_uniform(ids_shape, index, rng, 0, vocab);
        const Tensor y = Tensor::empty(rows_shape(ids, dim), dtype);
        ops::embedding_forward(y, table, ids);
        DSV3_CHECK_CLOSE(compare(y, naive_embedding(table, ids), 0.0, 0.0));  // a copy: exact
      }
    }
  }
}

TEST_CASE("embedding_backward adds up repeated ids, leaves unused rows alone and accumulates") {
  for (DType index : {DType::i32, DType::i64}) {
    const std::int64_t vocab = 5, dim = 67;
    const Tensor ids = from_values(Shape{2, 3}, index, {1, 3, 1, 1, 0, 3});
    Rng rng(2);
    const Tensor dy = random_uniform(Shape{2, 3, dim}, DType::f64, rng);
    const Tensor dtable_initial = random_uniform(Shape{vocab, dim}, DType::f64, rng);
    const Tensor dtable = dtable_initial.clone();
    ops::embedding_backward(dtable, dy, ids);
    const auto dy_at = [&](std::int64_t token, std::int64_t j) { return dy.data<double>()[token * dim + j]; };
    for (std::int64_t j = 0; j < dim; ++j) {
      const auto initial = [&](std::int64_t row) { return dtable_initial.data<double>()[row * dim + j]; };
      const auto actual = [&](std::int64_t row) { return dtable.data<double>()[row * dim + j]; };
      CHECK(actual(0) == doctest::Approx(initial(0) + dy_at(4, j)));
      CHECK(actual(1) == doctest::Approx(initial(1) + dy_at(0, j) + dy_at(2, j) + dy_at(3, j)));
      CHECK(actual(2) == initial(2));
      CHECK(actual(3) == doctest::Approx(initial(3) + dy_at(1, j) + dy_at(5, j)));
      CHECK(actual(4) == initial(4));
    }
  }
}

TEST_CASE("embedding_backward: f64 gradient check with respect to the table; f32 matches f64") {
  Rng rng(3);
  const std::int64_t vocab = 9, dim = 13;
  const Tensor table = random_uniform(Shape{vocab, dim}, DType::f64, rng);
  const Tensor ids = random_uniform(Shape{4, 6}, DType::i64, rng, 0, 4);  // few distinct ids: many repeats
  const Tensor dy = random_uniform(Shape{4, 6, dim}, DType::f64, rng);
  const Tensor dtable = Tensor::zeros(table.shape(), DType::f64);
  ops::embedding_backward(dtable, dy, ids);
  const auto forward = [&] {
    Tensor y = Tensor::empty(dy.shape(), DType::f64);
    ops::embedding_forward(y, table, ids);
    return y;
  };
  DSV3_CHECK_CLOSE(check_gradients(forward, dy, {table}, {dtable}));

  const Tensor dtable32 = Tensor::zeros(table.shape(), DType::f32);
  ops::embedding_backward(dtable32, from_values(dy.shape(), DType::f32, to_vector(dy)), ids);
  DSV3_CHECK_CLOSE(compare(dtable32, dtable, 1e-6, 1e-6));
}

TEST_CASE("embedding ops reject out-of-range ids, bad shapes and dtypes with the op in the message") {
  const Tensor table = Tensor::zeros(Shape{10, 4}, DType::f32);
  const Tensor y = Tensor::zeros(Shape{3, 4}, DType::f32);
  CHECK_THROWS_WITH_AS(ops::embedding_forward(y, table, from_values(Shape{3}, DType::i32, {0, 10, 2})),
                       doctest::Contains("embedding_forward: the id at position 1 is 10, expected a token id in "
                                         "[0, 10)"),
                       dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::embedding_forward(y, table, from_values(Shape{3}, DType::i64, {0, 1, -1})),
                       doctest::Contains("embedding_forward: the id at position 2 is -1"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::embedding_backward(table, y, from_values(Shape{3}, DType::i64, {12, 1, 2})),
                       doctest::Contains("embedding_backward: the id at position 0 is 12"), dsv3::Error);
  const Tensor ids = from_values(Shape{3}, DType::i32, {0, 1, 2});
  CHECK_THROWS_WITH_AS(ops::embedding_forward(Tensor::zeros(Shape{3, 5}, DType::f32), table, ids),
                       doctest::Contains("embedding_forward: y is f32[3, 5]@cpu, expected shape [3, 4]"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::embedding_forward(y, table, Tensor::zeros(Shape{3}, DType::f32)),
                       doctest::Contains("embedding_forward: ids is f32[3]@cpu, expected i32 or i64"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::embedding_forward(y, Tensor::zeros(Shape{40}, DType::f32), ids),
                       doctest::Contains("embedding_forward: table is f32[40]@cpu, expected rank 2"), dsv3::Error);
  CHECK_THROWS_WITH_AS(ops::embedding_backward(table, Tensor::zeros(Shape{3, 4}, DType::f64), ids),
                       doctest::Contains("embedding_backward: tensors of different dtypes"), dsv3::Error);
}
