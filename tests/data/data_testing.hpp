// Helpers of the data-pipeline tests: writing corpus files (plain and gzip) and a byte-level encoding that
// needs no tokenizer file.
#pragma once

#include "dsv3/core/error.hpp"
#include "dsv3/data/document_encoder.hpp"

#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3::testing {

inline void write_file(const std::filesystem::path& path, std::string_view content) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << content;
}

inline void write_gzip_file(const std::filesystem::path& path, std::string_view content) {
  std::filesystem::create_directories(path.parent_path());
  gzFile file = gzopen(path.string().c_str(), "wb");
  DSV3_CHECK(file != nullptr && gzwrite(file, content.data(), static_cast<unsigned>(content.size())) ==
                                    static_cast<int>(content.size()),
             "test: cannot write {}", path.string());
  gzclose(file);
}

// Id = byte + 3; BOS 1, EOS 2 (0 unused).
inline constexpr std::int32_t kByteBos = 1;
inline constexpr std::int32_t kByteEos = 2;

inline data::DocumentEncoder byte_encoder() {
  return data::DocumentEncoder(
      [](std::string_view text) {
        std::vector<std::int32_t> ids;
        for (const char c : text) ids.push_back(static_cast<unsigned char>(c) + 3);
        return ids;
      },
      {"byte-level-test-encoding", 259, kByteBos, kByteEos});
}

}  // namespace dsv3::testing
