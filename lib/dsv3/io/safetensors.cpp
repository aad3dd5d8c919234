#include "dsv3/io/safetensors.hpp"

#include "dsv3/core/error.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

namespace dsv3::io {

using nlohmann::json;

namespace {

struct DTypeInfo {
  SafetensorsDType dtype;
  std::string_view name;
  std::size_t size;
};

constexpr std::array<DTypeInfo, 15> kDTypes = {{
    {SafetensorsDType::BOOL, "BOOL", 1},   {SafetensorsDType::U8, "U8", 1},
    {SafetensorsDType::I8, "I8", 1},       {SafetensorsDType::I16, "I16", 2},
    {SafetensorsDType::U16, "U16", 2},     {SafetensorsDType::F16, "F16", 2},
    {SafetensorsDType::BF16, "BF16", 2},   {SafetensorsDType::I32, "I32", 4},
    {SafetensorsDType::U32, "U32", 4},     {SafetensorsDType::F32, "F32", 4},
    {SafetensorsDType::F64, "F64", 8},     {SafetensorsDType::I64, "I64", 8},
    {SafetensorsDType::U64, "U64", 8},     {SafetensorsDType::F8_E4M3, "F8_E4M3", 1},
    {SafetensorsDType::F8_E5M2, "F8_E5M2", 1},
}};

const DTypeInfo& info(SafetensorsDType dtype) { return kDTypes[static_cast<std::size_t>(dtype)]; }

std::string system_error() { return std::strerror(errno); }

// Nesting a valid header never exceeds: the root object, a tensor's object, its shape array.
constexpr int kMaxHeaderNesting = 3;

// Parses the header text, refusing duplicate keys (nlohmann would keep the last silently: two tensors of one name)
// and deeper nesting than the format has (which also bounds the parser's work on hostile input).
json parse_json(std::string_view text, std::string_view file) {
  std::vector<std::set<std::string>> open_objects;
  int nesting = 0;
  const json::parser_callback_t check = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        DSV3_CHECK(++nesting <= kMaxHeaderNesting,
                   "{}: safetensors header nests objects or arrays deeper than the format allows", file);
        if (event == json::parse_event_t::object_start) open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        open_objects.pop_back();
        --nesting;
        break;
      case json::parse_event_t::array_end:
        --nesting;
        break;
      case json::parse_event_t::key: {
        const std::string& key = parsed.get_ref<const std::string&>();
        DSV3_CHECK(open_objects.back().insert(key).second,
                   "{}: safetensors header has the key '{}' twice{}", file, key,
                   open_objects.size() == 1 ? " (a duplicate tensor name)" : "");
        break;
      }
      case json::parse_event_t::value:
        break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), check);
  } catch (const json::exception& error) {
    fail("{}: safetensors header is not valid JSON: {}", file, error.what());
  }
}

std::uint64_t unsigned_value(const json& value, std::string_view file, std::string_view tensor,
                             std::string_view field) {
  DSV3_CHECK(value.is_number_unsigned(), "{}: tensor '{}': {} holds {}, not a non-negative integer", file, tensor,
             field, value.dump());
  return value.get<std::uint64_t>();
}

SafetensorsTensor parse_tensor(const std::string& name, const json& entry, std::string_view file) {
  DSV3_CHECK(entry.is_object(), "{}: tensor '{}': header entry is {}, not an object", file, name, entry.dump());
  for (const auto& [key, value] : entry.items()) {
    DSV3_CHECK(key == "dtype" || key == "shape" || key == "data_offsets",
               "{}: tensor '{}': unknown field '{}' (expected dtype, shape, data_offsets)", file, name, key);
  }
  for (const char* key : {"dtype", "shape", "data_offsets"})
    DSV3_CHECK(entry.contains(key), "{}: tensor '{}': no '{}'", file, name, key);
  SafetensorsTensor tensor;
  tensor.name = name;
  const json& dtype = entry["dtype"];
  DSV3_CHECK(dtype.is_string(), "{}: tensor '{}': dtype {} is not a string", file, name, dtype.dump());
  const auto parsed = parse_safetensors_dtype(dtype.get_ref<const std::string&>());
  DSV3_CHECK(parsed, "{}: tensor '{}': unknown dtype {} (known: BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, "
             "F64, I64, U64, F8_E4M3, F8_E5M2)", file, name, dtype.dump());
  tensor.dtype = *parsed;

  const json& shape = entry["shape"];
  DSV3_CHECK(shape.is_array(), "{}: tensor '{}': shape {} is not an array", file, name, shape.dump());
  std::uint64_t bytes = safetensors_dtype_size(tensor.dtype);
  for (const json& extent : shape) {
    const std::uint64_t n = unsigned_value(extent, file, name, "shape");
    DSV3_CHECK(n <= static_cast<std::uint64_t>(INT64_MAX) && !__builtin_mul_overflow(bytes, n, &bytes),
               "{}: tensor '{}': shape {} overflows 64 bits", file, name, shape.dump());
    tensor.shape.push_back(static_cast<std::int64_t>(n));
  }
  const json& offsets = entry["data_offsets"];
  DSV3_CHECK(offsets.is_array() && offsets.size() == 2, "{}: tensor '{}': data_offsets {} is not [begin, end]", file,
             name, offsets.dump());
  tensor.begin = unsigned_value(offsets[0], file, name, "data_offsets");
  tensor.end = unsigned_value(offsets[1], file, name, "data_offsets");
  DSV3_CHECK(tensor.begin <= tensor.end, "{}: tensor '{}': data_offsets [{}, {}) end before they begin", file, name,
             tensor.begin, tensor.end);
  DSV3_CHECK(tensor.end - tensor.begin == bytes,
             "{}: tensor '{}': data_offsets [{}, {}) hold {} bytes, but {} {} needs {}", file, name, tensor.begin,
             tensor.end, tensor.end - tensor.begin, safetensors_dtype_name(tensor.dtype), shape.dump(), bytes);
  return tensor;
}

}  // namespace

std::string_view safetensors_dtype_name(SafetensorsDType dtype) { return info(dtype).name; }

std::optional<SafetensorsDType> parse_safetensors_dtype(std::string_view name) {
  for (const DTypeInfo& entry : kDTypes) {
    if (entry.name == name) return entry.dtype;
  }
  return std::nullopt;
}

std::size_t safetensors_dtype_size(SafetensorsDType dtype) { return info(dtype).size; }

std::optional<DType> dsv3_dtype(SafetensorsDType dtype) {
  switch (dtype) {
    case SafetensorsDType::F32: return DType::f32;
    case SafetensorsDType::F64: return DType::f64;
    case SafetensorsDType::BF16: return DType::bf16;
    case SafetensorsDType::F8_E4M3: return DType::fp8_e4m3;
    case SafetensorsDType::I32: return DType::i32;
    case SafetensorsDType::I64: return DType::i64;
    default: return std::nullopt;
  }
}

SafetensorsDType safetensors_dtype(DType dtype) {
  switch (dtype) {
    case DType::f32: return SafetensorsDType::F32;
    case DType::f64: return SafetensorsDType::F64;
    case DType::bf16: return SafetensorsDType::BF16;
    case DType::fp8_e4m3: return SafetensorsDType::F8_E4M3;
    case DType::i32: return SafetensorsDType::I32;
    case DType::i64: return SafetensorsDType::I64;
  }
  fail("safetensors_dtype: unknown dtype");
}

std::int64_t SafetensorsTensor::numel() const {
  std::int64_t n = 1;
  for (const std::int64_t extent : shape) n *= extent;
  return n;
}

SafetensorsHeader parse_safetensors_header(std::string_view text, std::uint64_t buffer_bytes,
                                           std::string_view file) {
  const json root = parse_json(text, file);
  DSV3_CHECK(root.is_object(), "{}: safetensors header is {}, not a JSON object", file,
             root.is_discarded() ? "empty" : root.type_name());
  SafetensorsHeader header;
  for (const auto& [name, entry] : root.items()) {
    if (name == "__metadata__") {
      DSV3_CHECK(entry.is_object(), "{}: __metadata__ is not an object", file);
      for (const auto& [key, value] : entry.items()) {
        DSV3_CHECK(value.is_string(), "{}: __metadata__ '{}' is {}, not a string", file, key, value.dump());
        header.metadata.emplace(key, value.get<std::string>());
      }
      continue;
    }
    header.tensors.push_back(parse_tensor(name, entry, file));
  }
  std::sort(header.tensors.begin(), header.tensors.end(), [](const auto& a, const auto& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  // The tensors tile [0, buffer_bytes): each starts where the previous one ended.
  std::uint64_t covered = 0;
  const SafetensorsTensor* previous = nullptr;
  for (const SafetensorsTensor& tensor : header.tensors) {
    DSV3_CHECK(tensor.end <= buffer_bytes,
               "{}: tensor '{}': data_offsets [{}, {}) reach beyond the data buffer of {} bytes (truncated file?)",
               file, tensor.name, tensor.begin, tensor.end, buffer_bytes);
    DSV3_CHECK(tensor.begin >= covered, "{}: tensor '{}': data_offsets [{}, {}) overlap tensor '{}' [{}, {})", file,
               tensor.name, tensor.begin, tensor.end, previous ? previous->name : "", previous ? previous->begin : 0,
               covered);
    DSV3_CHECK(tensor.begin == covered, "{}: tensor '{}': data_offsets [{}, {}) leave a hole of {} bytes after {}",
               file, tensor.name, tensor.begin, tensor.end, tensor.begin - covered,
               previous ? fmt::format("tensor '{}'", previous->name) : std::string("the header"));
    covered = tensor.end;
    previous = &tensor;
  }
  DSV3_CHECK(covered == buffer_bytes, "{}: the data buffer has {} bytes but the tensors cover {}: {} bytes at the end "
             "belong to no tensor", file, buffer_bytes, covered, buffer_bytes - covered);
  return header;
}

// --- reading ---

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  const std::string name = path.string();
  SafetensorsFile file;
  file.path_ = path;
  const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
  DSV3_CHECK(fd >= 0, "{}: cannot open: {}", name, system_error());
  struct stat status {};
  if (fstat(fd, &status) != 0) {
    const std::string reason = system_error();
    ::close(fd);
    fail("{}: cannot stat: {}", name, reason);
  }
  const auto size = static_cast<std::uint64_t>(status.st_size);
  if (size < 8) {
    ::close(fd);
    fail("{}: {} bytes: too short for a safetensors file (an 8-byte header length first)", name, size);
  }
  void* mapping = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  const std::string reason = system_error();
  ::close(fd);  // the mapping keeps the file
  DSV3_CHECK(mapping != MAP_FAILED, "{}: cannot map {} bytes: {}", name, size, reason);
  file.mapping_ = static_cast<std::byte*>(mapping);
  file.mapping_bytes_ = size;

  std::uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | std::to_integer<std::uint64_t>(file.mapping_[i]);
  DSV3_CHECK(header_bytes <= size - 8,
             "{}: the header length {} reaches beyond the end of the file ({} bytes): truncated or not safetensors",
             name, header_bytes, size);
  DSV3_CHECK(header_bytes <= kMaxSafetensorsHeaderBytes, "{}: header length {} exceeds the limit of {} bytes", name,
             header_bytes, kMaxSafetensorsHeaderBytes);
  file.data_start_ = 8 + header_bytes;
  const std::string_view text(reinterpret_cast<const char*>(file.mapping_ + 8), header_bytes);
  file.header_ = parse_safetensors_header(text, size - file.data_start_, name);
  for (std::size_t i = 0; i < file.header_.tensors.size(); ++i) file.index_.emplace(file.header_.tensors[i].name, i);
  return file;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      mapping_(std::exchange(other.mapping_, nullptr)),
      mapping_bytes_(std::exchange(other.mapping_bytes_, 0)),
      data_start_(other.data_start_),
      header_(std::move(other.header_)),
      index_(std::move(other.index_)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    if (mapping_) munmap(mapping_, mapping_bytes_);
    path_ = std::move(other.path_);
    mapping_ = std::exchange(other.mapping_, nullptr);
    mapping_bytes_ = std::exchange(other.mapping_bytes_, 0);
    data_start_ = other.data_start_;
    header_ = std::move(other.header_);
    index_ = std::move(other.index_);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_) munmap(mapping_, mapping_bytes_);
}

const SafetensorsTensor* SafetensorsFile::find(std::string_view name) const {
  const auto found = index_.find(std::string(name));
  return found == index_.end() ? nullptr : &header_.tensors[found->second];
}

std::span<const std::byte> SafetensorsFile::data(const SafetensorsTensor& tensor) const {
  return {mapping_ + data_start_ + tensor.begin, tensor.bytes()};
}

void SafetensorsFile::prefetch(std::span<const std::byte> bytes) const {
  const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto first = reinterpret_cast<std::uintptr_t>(bytes.data()) / page * page;
  const auto last = reinterpret_cast<std::uintptr_t>(bytes.data() + bytes.size());
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_WILLNEED);
}

void SafetensorsFile::release(std::span<const std::byte> bytes) const {
  // Whole pages inside the range only: a neighbouring tensor may still be in use.
  const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto first = (reinterpret_cast<std::uintptr_t>(bytes.data()) + page - 1) / page * page;
  const auto last = (reinterpret_cast<std::uintptr_t>(bytes.data() + bytes.size())) / page * page;
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

// --- writing ---

SafetensorsLayout safetensors_layout(const std::vector<SafetensorsTensorSpec>& tensors,
                                     const std::map<std::string, std::string>& metadata) {
  SafetensorsLayout layout;
  json root = json::object();
  if (!metadata.empty()) root["__metadata__"] = metadata;
  std::uint64_t offset = 0;  // dense: no holes, as the format requires
  std::set<std::string_view> names;
  for (const SafetensorsTensorSpec& spec : tensors) {
    DSV3_CHECK(spec.name != "__metadata__" && names.insert(spec.name).second,
               "safetensors_layout: tensor name '{}' is reserved or given twice", spec.name);
    SafetensorsTensor tensor{spec.name, spec.dtype, spec.shape, offset, 0};
    tensor.end = offset + static_cast<std::uint64_t>(tensor.numel()) * safetensors_dtype_size(spec.dtype);
    offset = tensor.end;
    root[spec.name] = {{"dtype", safetensors_dtype_name(spec.dtype)},
                       {"shape", spec.shape},
                       {"data_offsets", {tensor.begin, tensor.end}}};
    layout.tensors.push_back(std::move(tensor));
  }
  std::string text = root.dump();
  text.resize((text.size() + 8 + 7) / 8 * 8 - 8, ' ');
  layout.header.resize(8);
  const std::uint64_t length = text.size();
  for (int i = 0; i < 8; ++i) layout.header[static_cast<std::size_t>(i)] = static_cast<char>((length >> (8 * i)) & 0xff);
  layout.header += text;
  layout.file_bytes = layout.header.size() + offset;
  return layout;
}

SafetensorsWriter::SafetensorsWriter(const std::filesystem::path& path, const SafetensorsLayout& layout, Mode mode)
    : path_(path), layout_(&layout) {
  const std::string name = path.string();
  fd_ = ::open(name.c_str(), mode == Mode::create ? O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC : O_WRONLY | O_CLOEXEC,
               0644);
  DSV3_CHECK(fd_ >= 0, "{}: cannot open for writing: {}", name, system_error());
  if (mode == Mode::create) {
    DSV3_CHECK(pwrite(fd_, layout.header.data(), layout.header.size(), 0) ==
                   static_cast<ssize_t>(layout.header.size()),
               "{}: cannot write the header: {}", name, system_error());
    DSV3_CHECK(ftruncate(fd_, static_cast<off_t>(layout.file_bytes)) == 0, "{}: cannot size the file to {} bytes: {}",
               name, layout.file_bytes, system_error());
  }
}

SafetensorsWriter::SafetensorsWriter(SafetensorsWriter&& other) noexcept
    : path_(std::move(other.path_)), layout_(other.layout_), fd_(std::exchange(other.fd_, -1)) {}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void SafetensorsWriter::write(std::size_t index, std::uint64_t offset, std::span<const std::byte> bytes) const {
  const SafetensorsTensor& tensor = layout_->tensors.at(index);
  DSV3_CHECK(offset + bytes.size() <= tensor.bytes(), "{}: tensor '{}': writing bytes [{}, {}) of {}",
             path_.string(), tensor.name, offset, offset + bytes.size(), tensor.bytes());
  std::uint64_t position = layout_->header.size() + tensor.begin + offset;
  while (!bytes.empty()) {
    const ssize_t written = pwrite(fd_, bytes.data(), bytes.size(), static_cast<off_t>(position));
    DSV3_CHECK(written > 0, "{}: tensor '{}': write failed: {}", path_.string(), tensor.name, system_error());
    bytes = bytes.subspan(static_cast<std::size_t>(written));
    position += static_cast<std::uint64_t>(written);
  }
}

void SafetensorsWriter::close() {
  const int fd = std::exchange(fd_, -1);
  DSV3_CHECK(fsync(fd) == 0, "{}: fsync failed: {}", path_.string(), system_error());
  DSV3_CHECK(::close(fd) == 0, "{}: close failed: {}", path_.string(), system_error());
}

void write_safetensors(const std::filesystem::path& path, const std::vector<SafetensorsTensorSpec>& tensors,
                       const std::vector<std::span<const std::byte>>& data,
                       const std::map<std::string, std::string>& metadata) {
  DSV3_CHECK(tensors.size() == data.size(), "write_safetensors: {} tensors but {} data spans", tensors.size(),
             data.size());
  const SafetensorsLayout layout = safetensors_layout(tensors, metadata);
  SafetensorsWriter writer(path, layout, SafetensorsWriter::Mode::create);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    DSV3_CHECK(data[i].size() == layout.tensors[i].bytes(), "{}: tensor '{}': {} bytes given, {} needed",
               path.string(), tensors[i].name, data[i].size(), layout.tensors[i].bytes());
    writer.write(i, 0, data[i]);
  }
  writer.close();
}

}  // namespace dsv3::io
