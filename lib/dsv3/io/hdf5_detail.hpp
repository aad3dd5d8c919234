// What hdf5.cpp (files, groups, attributes) and hdf5_dataset.cpp (datasets and their transfers) share: the open
// file, HDF5's error reason and the HDF5 types of dsv3 dtypes. Private to lib/dsv3/io; includes hdf5.h.
#pragma once

#include "dsv3/io/hdf5.hpp"

#include <hdf5.h>

#include <filesystem>
#include <span>
#include <string>

namespace dsv3::io::h5 {

struct OpenFile {
  Handle file;
  std::filesystem::path path;
  bool parallel = false;
};

namespace detail {

// HDF5's error stack, innermost entry first: the innermost says what actually went wrong ("truncated file:
// eof = ..."), the outer ones how the call got there. Clears the stack.
std::string hdf5_reason();

// The HDF5 types of a dsv3 dtype: in the file (little-endian, whatever the machine that writes it) and in memory.
struct TypePair {
  hid_t stored;
  hid_t in_memory;
};
TypePair hdf5_types(DType dtype);

Handle property_list(hid_t property_class);
std::string join_extents(std::span<const std::int64_t> extents);

}  // namespace detail
}  // namespace dsv3::io::h5
