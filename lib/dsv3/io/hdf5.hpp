// Small RAII wrappers over the HDF5 C API, shared by the token datasets and the checkpoints: files (serial,
// or parallel through the MPI-IO driver when given a communicator), groups, datasets (f32, f64, bf16, i32,
// i64), attributes and hyperslab transfers. Every failure throws dsv3::Error naming the file, the object and HDF5's own reason; HDF5's
// automatic printing of error stacks is turned off. hdf5.h stays out of this header: handles are HDF5
// identifiers (hid_t, a 64-bit integer since HDF5 1.10), so users of dsv3::io need no HDF5 include path.
#pragma once

#include "dsv3/core/dtype.hpp"

#include <mpi.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3::io::h5 {

using Id = std::int64_t;  // hid_t

// Owns one HDF5 identifier (file, dataset, attribute, dataspace, datatype, property list) and releases it.
class Handle {
 public:
  Handle() = default;
  explicit Handle(Id id) : id_(id) {}
  Handle(Handle&& other) noexcept : id_(other.release()) {}
  Handle& operator=(Handle&& other) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle();

  Id get() const { return id_; }
  Id release() {
    const Id id = id_;
    id_ = -1;
    return id;
  }

 private:
  Id id_ = -1;
};

// On a parallel file, a collective transfer is called by every rank of the file's communicator, each with its
// own (possibly empty) selection, and lets MPI-IO aggregate the requests; an independent one is called by
// any rank alone. Serial files ignore the distinction.
enum class Transfer { collective, independent };

// The block of a dataset one rank reads or writes: `count` elements from `start` along each axis.
struct Hyperslab {
  std::vector<std::int64_t> start;
  std::vector<std::int64_t> count;

  static Hyperslab range(std::int64_t begin, std::int64_t count) { return {{begin}, {count}}; }
  std::int64_t numel() const;
};

// The blocks whose union selects elements [begin, begin + count) of the row-major flattening of an array of
// `shape` — any contiguous part of a tensor, such as one rank's shard of a parameter: at most 2·rank − 1 of them
// (a partial row, whole rows, a partial row, recursively), none for count 0.
std::vector<Hyperslab> flat_range_blocks(std::span<const std::int64_t> shape, std::int64_t begin, std::int64_t count);

// What every object of an open file shares: the file itself (closed when its last object goes) and how it
// was opened.
struct OpenFile;

// A file's root group, a group or a dataset: all carry attributes. In a parallel file, attribute writes are
// collective: every rank writes the same value.
class Object {
 public:
  const std::filesystem::path& file_path() const;
  const std::string& name() const { return name_; }

  bool has_attribute(std::string_view name) const;
  void write_string_attribute(std::string_view name, std::string_view value) const;
  void write_int_attribute(std::string_view name, std::int64_t value) const;
  void write_float_attribute(std::string_view name, double value) const;
  // Reading checks the stored kind (a string attribute is not read as a number); integers of any width and
  // fixed- or variable-length strings (as h5py writes them) are accepted.
  std::string read_string_attribute(std::string_view name) const;
  std::int64_t read_int_attribute(std::string_view name) const;
  double read_float_attribute(std::string_view name) const;

 protected:
  Object(Handle handle, std::shared_ptr<const OpenFile> file, std::string name);
  // Throw dsv3::Error "<file>: <object>: <what>", after a failed HDF5 call with ": <HDF5's reason>".
  [[noreturn]] void fail_call(std::string_view what) const;
  [[noreturn]] void fail_content(std::string_view what) const;
  Id id() const { return handle_.get(); }

  std::shared_ptr<const OpenFile> file_;

 private:
  void write_scalar_attribute(std::string_view name, Id file_type, Id memory_type, const void* value) const;
  Handle open_attribute(std::string_view name, int expected_class, std::string_view expected_kind) const;

  Handle handle_;
  std::string name_;
};

class Dataset : public Object {
 public:
  std::vector<std::int64_t> shape() const;
  std::int64_t numel() const;
  // The dsv3 dtype of the stored elements; nullopt for types dsv3 does not write (unsigned, other widths, ...).
  std::optional<DType> dtype() const;

  // Writes/reads `values` (slab.numel() of them, row-major) to/from the block `slab`. HDF5 converts between the
  // stored type and T when they differ.
  template <class T>
  void write(const Hyperslab& slab, std::span<const T> values, Transfer transfer = Transfer::collective) const {
    write_raw(std::span(&slab, 1), dtype_of<T>, values.data(), static_cast<std::int64_t>(values.size()), transfer);
  }
  template <class T>
  void read(const Hyperslab& slab, std::span<T> values, Transfer transfer = Transfer::collective) const {
    read_raw(std::span(&slab, 1), dtype_of<T>, values.data(), static_cast<std::int64_t>(values.size()), transfer);
  }
  // Writes/reads elements [begin, begin + count) of the row-major flattening of the dataset (flat_range_blocks),
  // from/to `count` contiguous values of `dtype`, in one transfer.
  void write_elements(std::int64_t begin, std::int64_t count, DType dtype, const void* values,
                      Transfer transfer = Transfer::collective) const;
  void read_elements(std::int64_t begin, std::int64_t count, DType dtype, void* values,
                     Transfer transfer = Transfer::collective) const;

 private:
  friend class File;
  Dataset(Handle handle, std::shared_ptr<const OpenFile> file, std::string name);
  Handle select(std::span<const Hyperslab> blocks, std::int64_t values) const;
  void write_raw(std::span<const Hyperslab> blocks, DType dtype, const void* values, std::int64_t count,
                 Transfer transfer) const;
  void read_raw(std::span<const Hyperslab> blocks, DType dtype, void* values, std::int64_t count,
                Transfer transfer) const;
};

// A group: a folder of datasets, with attributes of its own.
class Group : public Object {
 private:
  friend class File;
  Group(Handle handle, std::shared_ptr<const OpenFile> file, std::string name);
};

class File : public Object {
 public:
  enum class Mode { read, read_write, create };  // create truncates an existing file

  // With a communicator other than MPI_COMM_NULL the file is opened through MPI-IO, and every rank of `comm`
  // must make the same calls on it that change or read its structure (open, create, attributes, close).
  static File open(const std::filesystem::path& path, Mode mode, MPI_Comm comm = MPI_COMM_NULL);

  bool is_parallel() const;
  // Whether a link of this path exists (each group on the way must exist too).
  bool contains(std::string_view path) const;
  // A contiguous dataset of fixed shape, allocated at creation, never filled (every element is written later),
  // without modification times so that the same content gives the same bytes. Missing groups on the path
  // are created.
  Dataset create_dataset(std::string_view name, DType dtype, std::span<const std::int64_t> shape) const;
  Dataset open_dataset(std::string_view name) const;
  // Groups on the path are created as needed; creating one that exists is an error.
  Group create_group(std::string_view name) const;
  Group open_group(std::string_view name) const;
  // Writes everything buffered to the file (collective on a parallel file); closing happens when the last
  // object of the file is destroyed, but a flush reports errors that a destructor cannot.
  void flush() const;

 private:
  explicit File(std::shared_ptr<const OpenFile> file);
};

}  // namespace dsv3::io::h5
