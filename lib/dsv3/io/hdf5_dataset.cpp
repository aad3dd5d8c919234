// Datasets: shape and type, and transfers of hyperslabs and of flat element ranges (serial or collective).
#include "dsv3/io/hdf5.hpp"

#include "dsv3/io/hdf5_detail.hpp"

#include "dsv3/core/error.hpp"

#include <fmt/format.h>

#include <functional>
#include <numeric>

namespace dsv3::io::h5 {

using namespace detail;

namespace {

// "block start [..] count [..]" or "3 blocks", for error messages.
std::string describe(std::span<const Hyperslab> blocks) {
  if (blocks.size() != 1) return fmt::format("{} blocks", blocks.size());
  return fmt::format("block start {} count {}", join_extents(blocks[0].start), join_extents(blocks[0].count));
}

// Appends the blocks selecting elements [begin, end) of the row-major array `shape[axis:]`, whose element 0 is at
// `origin` (indices of the axes before `axis` fixed by the caller): at most one partial row before the whole rows,
// the whole rows as one block, and at most one partial row after them.
void append_range_blocks(std::span<const std::int64_t> shape, std::size_t axis, std::vector<std::int64_t>& origin,
                         std::int64_t begin, std::int64_t end, std::vector<Hyperslab>& blocks) {
  if (begin >= end) return;
  const std::int64_t row = std::accumulate(shape.begin() + static_cast<std::ptrdiff_t>(axis) + 1, shape.end(),
                                           std::int64_t{1}, std::multiplies<>());
  const auto whole_rows = [&](std::int64_t first, std::int64_t last) {
    if (first >= last) return;
    Hyperslab slab{origin, std::vector<std::int64_t>(shape.size(), 1)};
    slab.start[axis] = first;
    slab.count[axis] = last - first;
    for (std::size_t inner = axis + 1; inner < shape.size(); ++inner) slab.count[inner] = shape[inner];
    blocks.push_back(std::move(slab));
  };
  const auto part_of_row = [&](std::int64_t index, std::int64_t from, std::int64_t to) {
    origin[axis] = index;
    append_range_blocks(shape, axis + 1, origin, from, to, blocks);
    origin[axis] = 0;
  };
  const std::int64_t first_whole = (begin + row - 1) / row, last_whole = end / row;
  if (first_whole > last_whole) {  // inside one row
    part_of_row(begin / row, begin % row, end % row);
    return;
  }
  if (begin % row != 0) part_of_row(begin / row, begin % row, row);
  whole_rows(first_whole, last_whole);
  if (end % row != 0) part_of_row(last_whole, 0, end % row);
}

}  // namespace

std::vector<Hyperslab> flat_range_blocks(std::span<const std::int64_t> shape, std::int64_t begin,
                                         std::int64_t count) {
  const std::int64_t numel = std::accumulate(shape.begin(), shape.end(), std::int64_t{1}, std::multiplies<>());
  DSV3_CHECK(begin >= 0 && count >= 0 && begin + count <= numel,
             "HDF5: elements [{}, {}) lie outside an array of shape {} ({} elements)", begin, begin + count,
             join_extents(shape), numel);
  std::vector<Hyperslab> blocks;
  if (shape.empty()) {
    if (count > 0) blocks.push_back({});  // the one element of a scalar
    return blocks;
  }
  std::vector<std::int64_t> origin(shape.size(), 0);
  append_range_blocks(shape, 0, origin, begin, begin + count, blocks);
  return blocks;
}

// ---- Dataset -----------------------------------------------------------------------------------------------

Dataset::Dataset(Handle handle, std::shared_ptr<const OpenFile> file, std::string name)
    : Object(std::move(handle), std::move(file), std::move(name)) {}

std::vector<std::int64_t> Dataset::shape() const {
  Handle space(H5Dget_space(id()));
  const int rank = space.get() < 0 ? -1 : H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) fail_call("cannot read the dataset's shape");
  std::vector<hsize_t> extents(static_cast<std::size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), extents.data(), nullptr);
  return {extents.begin(), extents.end()};
}

std::int64_t Dataset::numel() const {
  const std::vector<std::int64_t> extents = shape();
  return std::accumulate(extents.begin(), extents.end(), std::int64_t{1}, std::multiplies<>());
}

std::optional<DType> Dataset::dtype() const {
  Handle type(H5Dget_type(id()));
  if (type.get() < 0) fail_call("cannot read the dataset's element type");
  const H5T_class_t type_class = H5Tget_class(type.get());
  const std::size_t size = H5Tget_size(type.get());
  if (type_class == H5T_INTEGER && H5Tget_sign(type.get()) == H5T_SGN_2) {
    if (size == 4) return DType::i32;
    if (size == 8) return DType::i64;
  }
  if (type_class == H5T_FLOAT) {
    if (H5Tequal(type.get(), hdf5_types(DType::bf16).stored) > 0) return DType::bf16;
    if (H5Tequal(type.get(), H5T_IEEE_F32LE) > 0 || H5Tequal(type.get(), H5T_IEEE_F32BE) > 0) return DType::f32;
    if (H5Tequal(type.get(), H5T_IEEE_F64LE) > 0 || H5Tequal(type.get(), H5T_IEEE_F64BE) > 0) return DType::f64;
  }
  return std::nullopt;
}

// The file dataspace with the union of `blocks` selected (nothing selected when they hold no element, so a rank
// with no share still takes part in a collective transfer), after checking each block lies inside the dataset and
// that together they hold `values` elements. Blocks must not overlap.
Handle Dataset::select(std::span<const Hyperslab> blocks, std::int64_t values) const {
  const std::vector<std::int64_t> extents = shape();
  std::int64_t selected = 0;
  for (const Hyperslab& slab : blocks) {
    bool inside = slab.start.size() == extents.size() && slab.count.size() == extents.size();
    for (std::size_t axis = 0; inside && axis < extents.size(); ++axis) {
      inside =
          slab.start[axis] >= 0 && slab.count[axis] >= 0 && slab.start[axis] + slab.count[axis] <= extents[axis];
    }
    if (!inside) {
      fail_content(fmt::format("block start {} count {} lies outside the dataset's shape {}",
                               join_extents(slab.start), join_extents(slab.count), join_extents(extents)));
    }
    selected += slab.numel();
  }
  if (selected != values) {
    const std::string what = blocks.size() == 1
                                 ? fmt::format("block count {} holds", join_extents(blocks[0].count))
                                 : fmt::format("{} blocks hold", blocks.size());
    fail_content(fmt::format("{} {} elements but {} were given", what, selected, values));
  }
  Handle space(H5Dget_space(id()));
  if (space.get() < 0) fail_call("cannot read the dataset's dataspace");
  H5Sselect_none(space.get());
  if (values == 0 || extents.empty()) {
    if (values > 0) H5Sselect_all(space.get());  // a scalar dataset
    return space;
  }
  for (const Hyperslab& slab : blocks) {
    if (slab.numel() == 0) continue;
    const std::vector<hsize_t> start(slab.start.begin(), slab.start.end());
    const std::vector<hsize_t> count(slab.count.begin(), slab.count.end());
    if (H5Sselect_hyperslab(space.get(), H5S_SELECT_OR, start.data(), nullptr, count.data(), nullptr) < 0) {
      fail_call("cannot select the block");
    }
  }
  return space;
}

namespace {

// The memory side of a transfer: `values` contiguous elements, or an empty selection.
Handle memory_space(std::int64_t values) {
  const hsize_t extent = static_cast<hsize_t>(std::max<std::int64_t>(values, 1));
  Handle space(H5Screate_simple(1, &extent, nullptr));
  if (values == 0) H5Sselect_none(space.get());
  return space;
}

Handle transfer_properties(bool parallel, Transfer transfer) {
  Handle properties = property_list(H5P_DATASET_XFER);
  if (parallel) {
    H5Pset_dxpl_mpio(properties.get(), transfer == Transfer::collective ? H5FD_MPIO_COLLECTIVE : H5FD_MPIO_INDEPENDENT);
  }
  return properties;
}

}  // namespace

void Dataset::write_raw(std::span<const Hyperslab> blocks, DType dtype, const void* values, std::int64_t count,
                        Transfer transfer) const {
  Handle file_space = select(blocks, count);
  Handle memory = memory_space(count);
  Handle properties = transfer_properties(file_->parallel, transfer);
  if (H5Dwrite(id(), hdf5_types(dtype).in_memory, memory.get(), file_space.get(), properties.get(), values) < 0) {
    fail_call(fmt::format("cannot write {}", describe(blocks)));
  }
}

void Dataset::read_raw(std::span<const Hyperslab> blocks, DType dtype, void* values, std::int64_t count,
                       Transfer transfer) const {
  Handle file_space = select(blocks, count);
  Handle memory = memory_space(count);
  Handle properties = transfer_properties(file_->parallel, transfer);
  if (H5Dread(id(), hdf5_types(dtype).in_memory, memory.get(), file_space.get(), properties.get(), values) < 0) {
    fail_call(fmt::format("cannot read {}", describe(blocks)));
  }
}

void Dataset::write_elements(std::int64_t begin, std::int64_t count, DType dtype, const void* values,
                             Transfer transfer) const {
  write_raw(flat_range_blocks(shape(), begin, count), dtype, values, count, transfer);
}

void Dataset::read_elements(std::int64_t begin, std::int64_t count, DType dtype, void* values,
                            Transfer transfer) const {
  read_raw(flat_range_blocks(shape(), begin, count), dtype, values, count, transfer);
}

}  // namespace dsv3::io::h5
