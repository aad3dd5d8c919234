#include "dsv3/io/hdf5.hpp"

#include "dsv3/io/hdf5_detail.hpp"

#include "dsv3/core/error.hpp"

#include <fmt/format.h>

#include <functional>
#include <numeric>
#include <type_traits>

namespace dsv3::io::h5 {

static_assert(std::is_same_v<Id, hid_t>, "dsv3::io::h5::Id must be HDF5's hid_t");

namespace detail {

std::string hdf5_reason() {
  std::vector<std::string> descriptions;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned, const H5E_error2_t* entry, void* client) -> herr_t {
        auto* list = static_cast<std::vector<std::string>*>(client);
        if (entry->desc && *entry->desc) list->emplace_back(entry->desc);
        return 0;
      },
      &descriptions);
  H5Eclear2(H5E_DEFAULT);
  if (descriptions.empty()) return "no reason given by HDF5";
  // The innermost entry and, when it differs, the one above it: enough to read, short enough for a log line.
  std::string reason = descriptions.front();
  if (descriptions.size() > 1 && descriptions[1] != descriptions.front()) reason += " (" + descriptions[1] + ")";
  return reason;
}

namespace {

// bfloat16 as HDF5 describes a float: the upper half of an IEEE f32 (sign bit 15, 8 exponent bits from bit 7 with
// bias 127, 7 mantissa bits). HDF5 before 2.0 predefines no such type; this one is what HDF5 2.0 calls
// H5T_FLOAT_BFLOAT16LE, so h5dump prints the values and HDF5 converts them to f32/f64 on read.
hid_t bfloat16_type() {
  // Never closed: HDF5 closes it when the library shuts down (inside MPI_Finalize for parallel HDF5), and a
  // static destructor running after that must not call into HDF5.
  static const hid_t type = [] {
    Handle made(H5Tcopy(H5T_IEEE_F32LE));
    if (made.get() < 0 || H5Tset_fields(made.get(), 15, 7, 8, 0, 7) < 0 || H5Tset_precision(made.get(), 16) < 0 ||
        H5Tset_size(made.get(), 2) < 0 || H5Tset_ebias(made.get(), 127) < 0) {
      dsv3::fail("HDF5: cannot make the bfloat16 type: {}", hdf5_reason());
    }
    return made.release();
  }();
  return type;
}

}  // namespace

TypePair hdf5_types(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return {H5T_IEEE_F32LE, H5T_NATIVE_FLOAT};
    case DType::f64:
      return {H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE};
    case DType::i32:
      return {H5T_STD_I32LE, H5T_NATIVE_INT32};
    case DType::i64:
      return {H5T_STD_I64LE, H5T_NATIVE_INT64};
    case DType::bf16:
      return {bfloat16_type(), bfloat16_type()};  // little-endian machines only, as every dsv3 target
    case DType::fp8_e4m3:
      break;
  }
  fail("HDF5: dsv3 does not store {} tensors in HDF5 yet", dtype_name(dtype));
}

Handle property_list(hid_t property_class) {
  Handle list(H5Pcreate(property_class));
  if (list.get() < 0) fail("HDF5: cannot create a property list: {}", hdf5_reason());
  return list;
}

std::string join_extents(std::span<const std::int64_t> extents) {
  return fmt::format("[{}]", fmt::join(extents, ", "));
}

}  // namespace detail

using namespace detail;

namespace {

// Errors are thrown as dsv3::Error with the stack folded into the message, so HDF5 must not print it too.
void silence_hdf5_error_printing() {
  static const bool silenced = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)silenced;
}

}  // namespace

// ---- Handle ------------------------------------------------------------------------------------------------

Handle& Handle::operator=(Handle&& other) noexcept {
  if (this != &other) {
    Handle old(release());
    id_ = other.release();
  }
  return *this;
}

Handle::~Handle() {
  // One call for every kind of identifier: dropping the last reference closes the object.
  if (id_ >= 0) H5Idec_ref(id_);
}

std::int64_t Hyperslab::numel() const {
  return std::accumulate(count.begin(), count.end(), std::int64_t{1}, std::multiplies<>());
}

// ---- Object and attributes ---------------------------------------------------------------------------------

Object::Object(Handle handle, std::shared_ptr<const OpenFile> file, std::string name)
    : file_(std::move(file)), handle_(std::move(handle)), name_(std::move(name)) {}

const std::filesystem::path& Object::file_path() const { return file_->path; }

void Object::fail_call(std::string_view what) const {
  dsv3::fail("{}: {}: {}: {}", file_->path.string(), name_, what, hdf5_reason());
}

void Object::fail_content(std::string_view what) const { dsv3::fail("{}: {}: {}", file_->path.string(), name_, what); }

bool Object::has_attribute(std::string_view name) const {
  const htri_t exists = H5Aexists(id(), std::string(name).c_str());
  if (exists < 0) fail_call(fmt::format("cannot look up attribute '{}'", name));
  return exists > 0;
}

void Object::write_scalar_attribute(std::string_view name, Id stored_type, Id in_memory_type, const void* value) const {
  const std::string key(name);
  if (has_attribute(name) && H5Adelete(id(), key.c_str()) < 0)
    fail_call(fmt::format("cannot replace attribute '{}'", name));
  Handle space(H5Screate(H5S_SCALAR));
  Handle attribute(H5Acreate2(id(), key.c_str(), stored_type, space.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (attribute.get() < 0 || H5Awrite(attribute.get(), in_memory_type, value) < 0) {
    fail_call(fmt::format("cannot write attribute '{}'", name));
  }
}

void Object::write_string_attribute(std::string_view name, std::string_view value) const {
  // Fixed-length, null-padded UTF-8: h5py and h5dump read it as a plain string. HDF5 has no zero-length
  // fixed strings, so the empty string is stored as one padding byte.
  Handle type(H5Tcopy(H5T_C_S1));
  if (type.get() < 0 || H5Tset_size(type.get(), std::max<std::size_t>(value.size(), 1)) < 0 ||
      H5Tset_strpad(type.get(), H5T_STR_NULLPAD) < 0 || H5Tset_cset(type.get(), H5T_CSET_UTF8) < 0) {
    fail_call(fmt::format("cannot make the string type of attribute '{}'", name));
  }
  std::string padded(value);
  padded.resize(std::max<std::size_t>(value.size(), 1), '\0');
  write_scalar_attribute(name, type.get(), type.get(), padded.data());
}

void Object::write_int_attribute(std::string_view name, std::int64_t value) const {
  write_scalar_attribute(name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

void Object::write_float_attribute(std::string_view name, double value) const {
  write_scalar_attribute(name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

Handle Object::open_attribute(std::string_view name, int expected_class, std::string_view expected_kind) const {
  if (!has_attribute(name)) fail_content(fmt::format("attribute '{}' is missing", name));
  Handle attribute(H5Aopen(id(), std::string(name).c_str(), H5P_DEFAULT));
  if (attribute.get() < 0) fail_call(fmt::format("cannot open attribute '{}'", name));
  Handle space(H5Aget_space(attribute.get()));
  if (space.get() < 0 || H5Sget_simple_extent_npoints(space.get()) != 1) {
    fail_content(fmt::format("attribute '{}' is not a single value", name));
  }
  Handle type(H5Aget_type(attribute.get()));
  if (type.get() < 0 || H5Tget_class(type.get()) != static_cast<H5T_class_t>(expected_class)) {
    fail_content(fmt::format("attribute '{}' is not {}", name, expected_kind));
  }
  return attribute;
}

std::string Object::read_string_attribute(std::string_view name) const {
  Handle attribute = open_attribute(name, H5T_STRING, "a string");
  Handle type(H5Aget_type(attribute.get()));
  if (H5Tis_variable_str(type.get()) > 0) {
    Handle in_memory(H5Tcopy(H5T_C_S1));
    H5Tset_size(in_memory.get(), H5T_VARIABLE);
    H5Tset_cset(in_memory.get(), H5Tget_cset(type.get()));
    char* text = nullptr;
    if (H5Aread(attribute.get(), in_memory.get(), &text) < 0)
      fail_call(fmt::format("cannot read attribute '{}'", name));
    std::string value = text ? text : "";
    H5free_memory(text);
    return value;
  }
  std::string value(H5Tget_size(type.get()), '\0');
  if (H5Aread(attribute.get(), type.get(), value.data()) < 0)
    fail_call(fmt::format("cannot read attribute '{}'", name));
  value.erase(value.find_last_not_of('\0') + 1);  // null padding or termination
  return value;
}

std::int64_t Object::read_int_attribute(std::string_view name) const {
  Handle attribute = open_attribute(name, H5T_INTEGER, "an integer");
  std::int64_t value = 0;
  if (H5Aread(attribute.get(), H5T_NATIVE_INT64, &value) < 0)
    fail_call(fmt::format("cannot read attribute '{}'", name));
  return value;
}

double Object::read_float_attribute(std::string_view name) const {
  Handle attribute = open_attribute(name, H5T_FLOAT, "a floating-point number");
  double value = 0;
  if (H5Aread(attribute.get(), H5T_NATIVE_DOUBLE, &value) < 0)
    fail_call(fmt::format("cannot read attribute '{}'", name));
  return value;
}

// ---- File --------------------------------------------------------------------------------------------------

namespace {

Handle open_root_group(const OpenFile& file) {
  Handle root(H5Gopen2(file.file.get(), "/", H5P_DEFAULT));
  if (root.get() < 0) dsv3::fail("{}: cannot open the root group: {}", file.path.string(), hdf5_reason());
  return root;
}

}  // namespace

File::File(std::shared_ptr<const OpenFile> file) : Object(open_root_group(*file), file, "/") {}

File File::open(const std::filesystem::path& path, Mode mode, MPI_Comm comm) {
  silence_hdf5_error_printing();
  auto file = std::make_shared<OpenFile>();
  file->path = path;
  file->parallel = comm != MPI_COMM_NULL;

  Handle access = property_list(H5P_FILE_ACCESS);
  if (file->parallel) {
    if (H5Pset_fapl_mpio(access.get(), comm, MPI_INFO_NULL) < 0) {
      dsv3::fail("{}: cannot select the MPI-IO driver: {}", path.string(), hdf5_reason());
    }
    // Metadata is read once and broadcast, and written collectively, instead of by every rank.
    H5Pset_all_coll_metadata_ops(access.get(), true);
    H5Pset_coll_metadata_write(access.get(), true);
  }
  const std::string name = path.string();
  if (mode == Mode::create) {
    Handle creation = property_list(H5P_FILE_CREATE);
    H5Pset_obj_track_times(creation.get(), false);  // the root group too: same content, same bytes
    file->file = Handle(H5Fcreate(name.c_str(), H5F_ACC_TRUNC, creation.get(), access.get()));
    if (file->file.get() < 0) dsv3::fail("{}: cannot create the HDF5 file: {}", name, hdf5_reason());
  } else {
    if (!std::filesystem::exists(path)) dsv3::fail("{}: no such file", name);
    const unsigned flags = mode == Mode::read ? H5F_ACC_RDONLY : H5F_ACC_RDWR;
    file->file = Handle(H5Fopen(name.c_str(), flags, access.get()));
    if (file->file.get() < 0) {
      dsv3::fail("{}: cannot open as HDF5 (not an HDF5 file, truncated or corrupted): {}", name, hdf5_reason());
    }
  }
  return File(std::move(file));
}

bool File::is_parallel() const { return file_->parallel; }

bool File::contains(std::string_view path) const {
  // H5Lexists needs every group on the way to exist, so walk the path one component at a time.
  std::string prefix;
  std::size_t position = path.starts_with('/') ? 1 : 0;
  if (position == path.size()) return true;  // the root group
  while (position <= path.size()) {
    const std::size_t end = std::min(path.find('/', position), path.size());
    prefix += '/';
    prefix.append(path.substr(position, end - position));
    const htri_t exists = H5Lexists(file_->file.get(), prefix.c_str(), H5P_DEFAULT);
    if (exists < 0) fail_call(fmt::format("cannot look up '{}'", prefix));
    if (exists == 0) return false;
    position = end + 1;
  }
  return true;
}

Dataset File::create_dataset(std::string_view name, DType dtype, std::span<const std::int64_t> shape) const {
  const std::vector<hsize_t> extents(shape.begin(), shape.end());
  Handle space(H5Screate_simple(static_cast<int>(extents.size()), extents.data(), nullptr));
  Handle links = property_list(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(links.get(), 1);
  Handle creation = property_list(H5P_DATASET_CREATE);
  H5Pset_layout(creation.get(), H5D_CONTIGUOUS);
  H5Pset_alloc_time(creation.get(), H5D_ALLOC_TIME_EARLY);
  H5Pset_fill_time(creation.get(), H5D_FILL_TIME_NEVER);
  H5Pset_obj_track_times(creation.get(), false);
  const std::string key(name);
  Handle dataset(H5Dcreate2(file_->file.get(), key.c_str(), hdf5_types(dtype).stored, space.get(), links.get(),
                            creation.get(), H5P_DEFAULT));
  if (dataset.get() < 0) {
    fail_call(fmt::format("cannot create dataset '{}' ({} {})", name, dtype_name(dtype), join_extents(shape)));
  }
  return Dataset(std::move(dataset), file_, key);
}

Dataset File::open_dataset(std::string_view name) const {
  const std::string key(name);
  if (!contains(name)) dsv3::fail("{}: dataset '{}' is missing", file_->path.string(), name);
  Handle dataset(H5Dopen2(file_->file.get(), key.c_str(), H5P_DEFAULT));
  if (dataset.get() < 0) fail_call(fmt::format("cannot open dataset '{}'", name));
  return Dataset(std::move(dataset), file_, key);
}

Group::Group(Handle handle, std::shared_ptr<const OpenFile> file, std::string name)
    : Object(std::move(handle), std::move(file), std::move(name)) {}

Group File::create_group(std::string_view name) const {
  const std::string key(name);
  Handle links = property_list(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(links.get(), 1);
  Handle creation = property_list(H5P_GROUP_CREATE);
  H5Pset_obj_track_times(creation.get(), false);
  Handle group(H5Gcreate2(file_->file.get(), key.c_str(), links.get(), creation.get(), H5P_DEFAULT));
  if (group.get() < 0) fail_call(fmt::format("cannot create group '{}'", name));
  return Group(std::move(group), file_, key);
}

Group File::open_group(std::string_view name) const {
  const std::string key(name);
  if (!contains(name)) dsv3::fail("{}: group '{}' is missing", file_->path.string(), name);
  Handle group(H5Gopen2(file_->file.get(), key.c_str(), H5P_DEFAULT));
  if (group.get() < 0) fail_call(fmt::format("cannot open group '{}'", name));
  return Group(std::move(group), file_, key);
}

void File::flush() const {
  if (H5Fflush(file_->file.get(), H5F_SCOPE_GLOBAL) < 0) fail_call("cannot flush the file");
}

}  // namespace dsv3::io::h5
