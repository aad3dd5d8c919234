// What checkpoints need of the io layer, on 2 ranks: flat element ranges of N-d datasets as unions of hyperslabs,
// written collectively in uneven pieces and read back anywhere; bfloat16 datasets; groups with attributes; and
// checksums that do not depend on how a tensor is split, but change with any flipped byte or swapped elements.
#include "dsv3/io/checksum.hpp"
#include "dsv3/io/hdf5.hpp"
#include "io/io_testing.hpp"
#include "support/testing.hpp"

#include <doctest/doctest.h>
#include <mpi.h>

#include <numeric>
#include <vector>

using namespace dsv3;
using namespace dsv3::io;
using dsv3::testing::ScratchDirectory;

namespace {

using dsv3::testing::world_rank;

}  // namespace

TEST_CASE("flat_range_blocks: every range of a 3-d array, as at most 5 disjoint blocks covering exactly the range") {
  const std::vector<std::int64_t> shape = {3, 4, 5};
  for (std::int64_t begin = 0; begin <= 60; ++begin) {
    for (std::int64_t end = begin; end <= 60; ++end) {
      CAPTURE(begin);
      CAPTURE(end);
      const std::vector<h5::Hyperslab> blocks = h5::flat_range_blocks(shape, begin, end - begin);
      CHECK(blocks.size() <= 5);
      std::vector<int> covered(60, 0);
      for (const h5::Hyperslab& block : blocks) {
        for (std::int64_t i = 0; i < block.count[0]; ++i)
          for (std::int64_t j = 0; j < block.count[1]; ++j)
            for (std::int64_t k = 0; k < block.count[2]; ++k)
              ++covered[static_cast<std::size_t>(((block.start[0] + i) * 4 + block.start[1] + j) * 5 +
                                                 block.start[2] + k)];
      }
      bool exact = true;
      for (std::int64_t e = 0; e < 60; ++e) {
        exact = exact && covered[static_cast<std::size_t>(e)] == (e >= begin && e < end);
      }
      CHECK(exact);
    }
  }
  CHECK_ERROR_CONTAINS(h5::flat_range_blocks(shape, 50, 11),
                       "elements [50, 61) lie outside an array of shape [3, 4, 5]");
}

TEST_CASE("element ranges written collectively in uneven pieces read back whole; bfloat16; group attributes") {
  ScratchDirectory scratch("hdf5-elements");
  const auto path = scratch / "elements.h5";
  const std::vector<std::int64_t> shape = {3, 4, 5};
  std::vector<float> values(60);
  std::iota(values.begin(), values.end(), 0.5f);
  std::vector<bf16> halves;
  for (const float value : values) halves.push_back(f32_to_bf16(value));
  // Rank 0 writes elements [0, 23), rank 1 [23, 60): pieces that cut rows and planes.
  const std::int64_t begin = world_rank() == 0 ? 0 : 23, count = world_rank() == 0 ? 23 : 37;
  {
    const h5::File file = h5::File::open(path, h5::File::Mode::create, MPI_COMM_WORLD);
    const h5::Group group = file.create_group("/train");
    group.write_int_attribute("step", 7);
    const h5::Dataset floats = file.create_dataset("/model/w", DType::f32, shape);
    floats.write_elements(begin, count, DType::f32, values.data() + begin);
    const h5::Dataset narrow = file.create_dataset("/model/w_bf16", DType::bf16, shape);
    narrow.write_elements(begin, count, DType::bf16, halves.data() + begin);
  }
  const h5::File file = h5::File::open(path, h5::File::Mode::read, MPI_COMM_WORLD);
  CHECK(file.open_group("/train").read_int_attribute("step") == 7);
  std::vector<float> whole(60);
  file.open_dataset("/model/w").read_elements(0, 60, DType::f32, whole.data());
  CHECK(whole == values);
  const h5::Dataset narrow = file.open_dataset("/model/w_bf16");
  CHECK(narrow.dtype() == DType::bf16);
  std::vector<float> widened(60);  // HDF5 converts bfloat16 to f32 on read
  narrow.read(h5::Hyperslab{{0, 0, 0}, shape}, std::span(widened));
  for (std::size_t i = 0; i < 60; ++i) CHECK(widened[i] == bf16_to_f32(halves[i]));
  CHECK_ERROR_CONTAINS(file.open_group("/optim"), "group '/optim' is missing");
}

TEST_CASE("checksums: the same for any split of a tensor, different after a flipped byte or swapped elements") {
  std::vector<float> values(1000);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = 0.001f * static_cast<float>(i * i % 977);
  Checksum whole;
  whole.add(values.data(), DType::f32, 0, 1000);
  // Rank 0 adds [0, 377), rank 1 [377, 1000), in two pieces of its own.
  std::vector<Checksum> split(1);
  if (world_rank() == 0) {
    split[0].add(values.data(), DType::f32, 0, 377);
  } else {
    split[0].add(values.data() + 377, DType::f32, 377, 100);
    Checksum rest;
    rest.add(values.data() + 477, DType::f32, 477, 523);
    split[0].add(rest);
  }
  all_reduce(split, MPI_COMM_WORLD);
  CHECK(split[0] == whole);
  CHECK(whole.hex().size() == 32);

  std::vector<float> flipped = values;
  reinterpret_cast<unsigned char*>(flipped.data())[2001] ^= 0x01;
  Checksum changed;
  changed.add(flipped.data(), DType::f32, 0, 1000);
  CHECK(changed.sum != whole.sum);

  std::vector<float> swapped = values;
  std::swap(swapped[10], swapped[20]);
  Checksum reordered;
  reordered.add(swapped.data(), DType::f32, 0, 1000);
  CHECK(reordered.sum == whole.sum);
  CHECK(reordered.weighted != whole.weighted);
}
