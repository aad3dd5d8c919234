// The HDF5 wrappers: attributes, datasets and hyperslabs, serial and parallel (run on 2 ranks), and errors that
// name the file, the object and the reason.
#include "dsv3/core/error.hpp"
#include "dsv3/io/collective.hpp"
#include "dsv3/io/hdf5.hpp"
#include "io/io_testing.hpp"
#include "support/testing.hpp"

#include <doctest/doctest.h>
#include <mpi.h>

#include <fstream>
#include <numeric>
#include <vector>

using namespace dsv3;
using namespace dsv3::io;
using dsv3::testing::ScratchDirectory;

namespace {

using dsv3::testing::world_rank;
using dsv3::testing::world_size;

}  // namespace

TEST_CASE("attributes round-trip and are checked for their kind") {
  ScratchDirectory scratch("hdf5-attributes");
  if (world_rank() != 0) return;
  const auto path = scratch / "attributes.h5";
  {
    const h5::File file = h5::File::open(path, h5::File::Mode::create);
    file.write_string_attribute("name", "débug ✓");
    file.write_string_attribute("empty", "");
    file.write_int_attribute("count", -1234567890123);
    file.write_float_attribute("ratio", 0.125);
    file.write_int_attribute("replaced", 1);
    file.write_int_attribute("replaced", 2);
    CHECK_FALSE(file.is_parallel());
  }
  const h5::File file = h5::File::open(path, h5::File::Mode::read);
  CHECK(file.read_string_attribute("name") == "débug ✓");
  CHECK(file.read_string_attribute("empty").empty());
  CHECK(file.read_int_attribute("count") == -1234567890123);
  CHECK(file.read_float_attribute("ratio") == 0.125);
  CHECK(file.read_int_attribute("replaced") == 2);
  CHECK(file.has_attribute("count"));
  CHECK_FALSE(file.has_attribute("absent"));
  const std::string file_name = path.string();
  CHECK_ERROR_CONTAINS(file.read_int_attribute("absent"), file_name + ": /: attribute 'absent' is missing");
  CHECK_ERROR_CONTAINS(file.read_int_attribute("name"), file_name, "attribute 'name' is not an integer");
  CHECK_ERROR_CONTAINS(file.read_string_attribute("ratio"), file_name, "attribute 'ratio' is not a string");
}

TEST_CASE("datasets: types, shapes, hyperslabs, nested names") {
  ScratchDirectory scratch("hdf5-datasets");
  if (world_rank() != 0) return;
  const auto path = scratch / "datasets.h5";
  std::vector<float> matrix(3 * 4);
  std::iota(matrix.begin(), matrix.end(), 0.5f);
  {
    const h5::File file = h5::File::open(path, h5::File::Mode::create);
    const std::int64_t shape[] = {3, 4};
    const h5::Dataset dataset = file.create_dataset("/model/layers.0.w", DType::f32, shape);
    // Two blocks of rows, written separately.
    dataset.write(h5::Hyperslab{{0, 0}, {1, 4}}, std::span<const float>(matrix).first(4));
    dataset.write(h5::Hyperslab{{1, 0}, {2, 4}}, std::span<const float>(matrix).subspan(4));
    dataset.write_string_attribute("note", "on a dataset");
    const std::int64_t vector_shape[] = {5};
    const std::vector<std::int64_t> longs = {1, -2, 3, 1LL << 40, 5};
    file.create_dataset("i64", DType::i64, vector_shape).write(h5::Hyperslab::range(0, 5), std::span(longs));
  }
  const h5::File file = h5::File::open(path, h5::File::Mode::read);
  CHECK(file.contains("/model"));
  CHECK(file.contains("/model/layers.0.w"));
  CHECK(file.contains("model/layers.0.w"));
  CHECK_FALSE(file.contains("/model/absent"));
  CHECK_FALSE(file.contains("/absent/deeper"));

  const h5::Dataset dataset = file.open_dataset("/model/layers.0.w");
  CHECK(dataset.shape() == std::vector<std::int64_t>{3, 4});
  CHECK(dataset.dtype() == DType::f32);
  CHECK(dataset.read_string_attribute("note") == "on a dataset");
  std::vector<float> all(12);
  dataset.read(h5::Hyperslab{{0, 0}, {3, 4}}, std::span(all));
  CHECK(all == matrix);
  std::vector<float> column(3);
  dataset.read(h5::Hyperslab{{0, 2}, {3, 1}}, std::span(column));
  CHECK(column == std::vector<float>{2.5f, 6.5f, 10.5f});
  // The stored type is converted on read.
  std::vector<double> as_double(2);
  dataset.read(h5::Hyperslab{{2, 2}, {1, 2}}, std::span(as_double));
  CHECK(as_double == std::vector<double>{10.5, 11.5});

  const h5::Dataset longs = file.open_dataset("i64");
  CHECK(longs.dtype() == DType::i64);
  std::vector<std::int64_t> middle(3);
  longs.read(h5::Hyperslab::range(1, 3), std::span(middle));
  CHECK(middle == std::vector<std::int64_t>{-2, 3, 1LL << 40});

  std::vector<float> one(1);
  CHECK_ERROR_CONTAINS((dataset.read(h5::Hyperslab{{3, 0}, {1, 1}}, std::span(one))),
                       path.string() +
                           ": /model/layers.0.w: block start [3, 0] count [1, 1] lies outside the "
                           "dataset's shape [3, 4]");
  CHECK_ERROR_CONTAINS((dataset.read(h5::Hyperslab{{0, 0}, {1, 2}}, std::span(one))),
                       "holds 2 elements but 1 were given");
  CHECK_ERROR_CONTAINS(file.open_dataset("/model/absent"), path.string(), "dataset '/model/absent' is missing");
}

TEST_CASE("opening what is not an HDF5 file names the file") {
  ScratchDirectory scratch("hdf5-errors");
  if (world_rank() != 0) return;
  const auto missing = scratch / "missing.h5";
  CHECK_ERROR_CONTAINS(h5::File::open(missing, h5::File::Mode::read), missing.string() + ": no such file");
  const auto text = scratch / "text.h5";
  std::ofstream(text) << "plain text, not HDF5\n";
  CHECK_ERROR_CONTAINS(h5::File::open(text, h5::File::Mode::read), text.string() + ": cannot open as HDF5");
}

TEST_CASE("parallel file: every rank writes its block collectively, one rank with nothing") {
  ScratchDirectory scratch("hdf5-parallel");
  const int rank = world_rank();
  const int size = world_size();
  const auto path = scratch / "parallel.h5";
  // Rank r holds 3·r values (rank 0 none), consecutive in rank order.
  const std::int64_t first = 3 * rank * (rank - 1) / 2;
  const std::int64_t total = 3 * size * (size - 1) / 2;
  std::vector<std::int32_t> mine(static_cast<std::size_t>(3 * rank));
  std::iota(mine.begin(), mine.end(), static_cast<std::int32_t>(first));
  {
    const h5::File file = h5::File::open(path, h5::File::Mode::create, MPI_COMM_WORLD);
    CHECK(file.is_parallel());
    file.write_int_attribute("ranks", size);
    const std::int64_t shape[] = {total};
    const h5::Dataset dataset = file.create_dataset("values", DType::i32, shape);
    dataset.write(h5::Hyperslab::range(first, static_cast<std::int64_t>(mine.size())),
                  std::span<const std::int32_t>(mine));
    file.flush();
  }
  {
    // Read back collectively, each rank its own block.
    const h5::File file = h5::File::open(path, h5::File::Mode::read, MPI_COMM_WORLD);
    const h5::Dataset dataset = file.open_dataset("values");
    std::vector<std::int32_t> back(mine.size());
    dataset.read(h5::Hyperslab::range(first, static_cast<std::int64_t>(back.size())), std::span(back));
    CHECK(back == mine);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) {
    const h5::File file = h5::File::open(path, h5::File::Mode::read);
    CHECK(file.read_int_attribute("ranks") == size);
    std::vector<std::int32_t> all(static_cast<std::size_t>(total));
    file.open_dataset("values").read(h5::Hyperslab::range(0, total), std::span(all));
    std::vector<std::int32_t> expected(all.size());
    std::iota(expected.begin(), expected.end(), 0);
    CHECK(all == expected);
  }
}

TEST_CASE("agree_on_failure: every rank throws the lowest failing rank's error") {
  const int rank = world_rank();
  const int size = world_size();
  CHECK_NOTHROW(agree_on_failure(MPI_COMM_WORLD, [] {}));
  const std::string expected =
      size > 1 ? "rank " + std::to_string(size - 1) + ": last rank failed" : "last rank failed";
  const std::string message = dsv3::testing::error_message([&] {
    agree_on_failure(MPI_COMM_WORLD, [&] {
      if (rank == size - 1) fail("last rank failed");
    });
  });
  CHECK(message == expected);
}
