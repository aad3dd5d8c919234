// safetensors files (REFERENCE.md §4): an 8-byte little-endian header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end)}, "__metadata__": {string: string}}, then the data buffer,
// row-major and little-endian, offsets relative to it.
//
// Reading maps the file and validates the whole header before anything is used: the length within the file, valid
// JSON (no duplicate keys, nothing nested deeper than the format allows), known dtypes, every tensor's byte count =
// numel × dtype size, offsets inside the buffer and the tensors tiling it with no overlap and no hole. A violation is
// a dsv3::Error naming the file and the tensor. Writing lays the tensors out densely in the order given, the header
// padded with spaces to a multiple of 8 bytes (tensors given by decreasing dtype size all start aligned).
#pragma once

#include "dsv3/core/dtype.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dsv3::io {

enum class SafetensorsDType : std::uint8_t {
  BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, F8_E4M3, F8_E5M2
};
std::string_view safetensors_dtype_name(SafetensorsDType dtype);  // as in the header: "BF16", "F8_E4M3", ...
std::optional<SafetensorsDType> parse_safetensors_dtype(std::string_view name);
std::size_t safetensors_dtype_size(SafetensorsDType dtype);
// The dsv3 dtype with the same bits (F32, F64, BF16, F8_E4M3, I32, I64), or nullopt.
std::optional<DType> dsv3_dtype(SafetensorsDType dtype);
SafetensorsDType safetensors_dtype(DType dtype);

struct SafetensorsTensor {
  std::string name;
  SafetensorsDType dtype = SafetensorsDType::F32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  // data_offsets: bytes [begin, end) of the data buffer
  std::uint64_t end = 0;

  std::int64_t numel() const;
  std::uint64_t bytes() const { return end - begin; }
};

struct SafetensorsHeader {
  std::vector<SafetensorsTensor> tensors;  // in data order (ascending offsets)
  std::map<std::string, std::string> metadata;
};

// The largest header accepted (the reference implementation's limit): larger ones are corrupt or hostile.
inline constexpr std::uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// Parses and validates the JSON header of `file` (named in errors) whose data buffer has `buffer_bytes` bytes.
SafetensorsHeader parse_safetensors_header(std::string_view json, std::uint64_t buffer_bytes, std::string_view file);

// A safetensors file mapped read-only. Tensor data are views into the mapping, valid while the file lives.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::filesystem::path& path);
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::filesystem::path& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  const std::vector<SafetensorsTensor>& tensors() const { return header_.tensors; }
  // nullptr when the file has no tensor of that name.
  const SafetensorsTensor* find(std::string_view name) const;
  // The tensor's bytes (the tensor must be one of this file's).
  std::span<const std::byte> data(const SafetensorsTensor& tensor) const;
  // Starts reading `bytes` (part of this file's mapping) from disk in the background, so that a streaming reader
  // overlaps the reading of its next chunk with the work on the current one.
  void prefetch(std::span<const std::byte> bytes) const;
  // Returns the pages of `bytes` to the page cache: a streaming reader keeps its resident memory small instead of
  // accumulating the whole file.
  void release(std::span<const std::byte> bytes) const;

 private:
  SafetensorsFile() = default;

  std::filesystem::path path_;
  std::byte* mapping_ = nullptr;
  std::size_t mapping_bytes_ = 0;
  std::size_t data_start_ = 0;  // 8 + header length
  SafetensorsHeader header_;
  std::unordered_map<std::string, std::size_t> index_;
};

// What to write: a tensor's name, dtype and shape.
struct SafetensorsTensorSpec {
  std::string name;
  SafetensorsDType dtype = SafetensorsDType::F32;
  std::vector<std::int64_t> shape;
};

// Where each tensor of a file to write goes: the tensors end to end in the order given.
struct SafetensorsLayout {
  std::string header;  // the 8 length bytes and the JSON, padded with spaces to a multiple of 8 bytes
  std::vector<SafetensorsTensor> tensors;
  std::uint64_t file_bytes = 0;
};
SafetensorsLayout safetensors_layout(const std::vector<SafetensorsTensorSpec>& tensors,
                                     const std::map<std::string, std::string>& metadata = {});

// Writes a file of a given layout, tensor by tensor and part by part, in any order: so several ranks can fill one
// file, one creating it (header written, size set) and the others opening it after.
class SafetensorsWriter {
 public:
  enum class Mode { create, open_existing };
  SafetensorsWriter(const std::filesystem::path& path, const SafetensorsLayout& layout, Mode mode);
  SafetensorsWriter(SafetensorsWriter&& other) noexcept;
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(SafetensorsWriter&&) = delete;
  ~SafetensorsWriter();

  // Writes `bytes` at byte `offset` of tensor `index` of the layout.
  void write(std::size_t index, std::uint64_t offset, std::span<const std::byte> bytes) const;
  // Flushes to disk and closes; errors are reported here rather than lost in the destructor.
  void close();

 private:
  std::filesystem::path path_;
  const SafetensorsLayout* layout_;
  int fd_ = -1;
};

// Writes a whole file at once (tests, small files): `data[i]` holds the bytes of tensors[i].
void write_safetensors(const std::filesystem::path& path, const std::vector<SafetensorsTensorSpec>& tensors,
                       const std::vector<std::span<const std::byte>>& data,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace dsv3::io
