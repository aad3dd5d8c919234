#include "dsv3/io/safetensors_index.hpp"

#include "dsv3/core/error.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>

namespace dsv3::io {

using nlohmann::json;

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::filesystem::path& folder) {
  SafetensorsCheckpoint checkpoint;
  checkpoint.folder_ = folder;
  const std::filesystem::path index_path = folder / kSafetensorsIndexName;
  if (!std::filesystem::exists(index_path)) {
    DSV3_CHECK(std::filesystem::exists(folder / kSafetensorsSingleName), "{}: neither {} nor {} found",
               folder.string(), kSafetensorsIndexName, kSafetensorsSingleName);
    const SafetensorsFile& file = checkpoint.shard(kSafetensorsSingleName);
    for (const SafetensorsTensor& tensor : file.tensors()) checkpoint.shard_of_[tensor.name] = kSafetensorsSingleName;
    return checkpoint;
  }
  const std::string name = index_path.string();
  std::ifstream stream(index_path);
  DSV3_CHECK(stream, "{}: cannot open", name);
  const json index = json::parse(stream, nullptr, /*allow_exceptions=*/false);
  DSV3_CHECK(!index.is_discarded() && index.is_object(), "{}: not a JSON object", name);
  DSV3_CHECK(index.contains("weight_map") && index["weight_map"].is_object(), "{}: no object 'weight_map'", name);
  for (const auto& [tensor, file] : index["weight_map"].items()) {
    DSV3_CHECK(file.is_string(), "{}: weight_map['{}'] is {}, not a file name", name, tensor, file.dump());
    const std::string& shard = file.get_ref<const std::string&>();
    // A plain file name in the folder: never a path that leaves it.
    DSV3_CHECK(!shard.empty() && shard.find('/') == std::string::npos && shard != "." && shard != "..",
               "{}: weight_map['{}'] = '{}' is not a file name in the folder", name, tensor, shard);
    checkpoint.shard_of_[tensor] = shard;
  }
  return checkpoint;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> names;
  for (const auto& [name, file] : shard_of_) names.push_back(name);
  return names;
}

const SafetensorsFile& SafetensorsCheckpoint::shard(const std::string& file) const {
  auto& slot = shards_[file];
  if (!slot) slot = std::make_unique<SafetensorsFile>(SafetensorsFile::open(folder_ / file));
  return *slot;
}

SafetensorsCheckpoint::Located SafetensorsCheckpoint::find(std::string_view name) const {
  const auto found = shard_of_.find(std::string(name));
  DSV3_CHECK(found != shard_of_.end(), "{}: no tensor '{}'", folder_.string(), name);
  const SafetensorsFile& file = shard(found->second);
  const SafetensorsTensor* tensor = file.find(name);
  DSV3_CHECK(tensor, "{}: the index puts tensor '{}' in {}, which does not hold it", folder_.string(), name,
             file.path().string());
  return {&file, tensor};
}

void write_safetensors_index(const std::filesystem::path& folder, std::uint64_t total_size,
                             const std::map<std::string, std::string>& weight_map) {
  const json index = {{"metadata", {{"total_size", total_size}}}, {"weight_map", weight_map}};
  const std::filesystem::path path = folder / kSafetensorsIndexName;
  std::ofstream stream(path);
  stream << index.dump(2) << "\n";
  stream.close();
  DSV3_CHECK(stream, "{}: cannot write", path.string());
}

std::string safetensors_shard_name(std::size_t shard, std::size_t shards) {
  return fmt::format("model-{:05d}-of-{:05d}.safetensors", shard, shards);
}

}  // namespace dsv3::io
