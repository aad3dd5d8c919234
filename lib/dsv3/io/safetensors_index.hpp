// A Hugging Face checkpoint's tensors: model.safetensors.index.json ({"metadata": {"total_size": N},
// "weight_map": {tensor: shard file}}) and its shards, or a single model.safetensors (REFERENCE.md §4).
// Shards are opened (mapped, header validated) on first use, so a reader that needs a few tensors touches only
// their files.
#pragma once

#include "dsv3/io/safetensors.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3::io {

inline constexpr const char* kSafetensorsIndexName = "model.safetensors.index.json";
inline constexpr const char* kSafetensorsSingleName = "model.safetensors";

class SafetensorsCheckpoint {
 public:
  // `folder` holds the index or a single model.safetensors; an error names what is missing or malformed.
  static SafetensorsCheckpoint open(const std::filesystem::path& folder);

  const std::filesystem::path& folder() const { return folder_; }
  // Every tensor name, sorted.
  std::vector<std::string> names() const;
  bool contains(std::string_view name) const { return shard_of_.count(std::string(name)) > 0; }

  struct Located {
    const SafetensorsFile* file;
    const SafetensorsTensor* tensor;
  };
  // The tensor and its file; an error naming the folder and the tensor when there is none, or when the index
  // names a shard that does not hold it.
  Located find(std::string_view name) const;

 private:
  const SafetensorsFile& shard(const std::string& file) const;

  std::filesystem::path folder_;
  std::map<std::string, std::string> shard_of_;  // tensor -> shard file name
  mutable std::map<std::string, std::unique_ptr<SafetensorsFile>> shards_;
};

// Writes model.safetensors.index.json in `folder`: total_size (bytes of tensor data) and the weight map.
void write_safetensors_index(const std::filesystem::path& folder, std::uint64_t total_size,
                             const std::map<std::string, std::string>& weight_map);

// "model-00001-of-00004.safetensors" (1-based `shard`).
std::string safetensors_shard_name(std::size_t shard, std::size_t shards);

}  // namespace dsv3::io
