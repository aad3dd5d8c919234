// safetensors reading, writing and every bad input the reader must refuse with an error naming file and tensor.
#include "dsv3/io/safetensors.hpp"
#include "dsv3/io/safetensors_index.hpp"
#include "io/io_testing.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <fstream>

using namespace dsv3;
using namespace dsv3::io;
using dsv3::testing::ScratchDirectory;

namespace {

// A file of the given header text (its length prefixed) followed by `data_bytes` bytes of data.
std::filesystem::path raw_file(const ScratchDirectory& dir, const std::string& name, const std::string& header,
                               std::size_t data_bytes) {
  const std::filesystem::path path = dir / name;
  std::ofstream stream(path, std::ios::binary);
  const std::uint64_t length = header.size();
  for (int i = 0; i < 8; ++i) stream.put(static_cast<char>((length >> (8 * i)) & 0xff));
  stream << header << std::string(data_bytes, '\0');
  return path;
}

std::span<const std::byte> bytes_of(const std::vector<float>& values) {
  return std::as_bytes(std::span(values));
}

}  // namespace

TEST_CASE("safetensors: a written file reads back: dtypes, shapes, data, metadata") {
  ScratchDirectory dir("safetensors-roundtrip");
  const std::vector<float> a = {1, 2, 3, 4, 5, 6};
  const std::vector<std::uint16_t> b = {0x3f80, 0x4000, 0xbf80};
  const std::vector<std::uint8_t> c = {1, 2, 3, 4, 5};
  const std::vector<float> empty;
  write_safetensors(dir / "x.safetensors",
                    {{"a", SafetensorsDType::F32, {2, 3}},
                     {"b", SafetensorsDType::BF16, {3}},
                     {"c", SafetensorsDType::F8_E4M3, {5, 1}},
                     {"empty", SafetensorsDType::F32, {0, 4}}},
                    {bytes_of(a), std::as_bytes(std::span(b)), std::as_bytes(std::span(c)), bytes_of(empty)},
                    {{"format", "pt"}});
  const SafetensorsFile file = SafetensorsFile::open(dir / "x.safetensors");
  REQUIRE(file.tensors().size() == 4);
  CHECK(file.header().metadata.at("format") == "pt");
  const SafetensorsTensor* ta = file.find("a");
  REQUIRE(ta);
  CHECK(ta->shape == std::vector<std::int64_t>{2, 3});
  CHECK(ta->numel() == 6);
  CHECK(std::memcmp(file.data(*ta).data(), a.data(), 24) == 0);
  const SafetensorsTensor* tb = file.find("b");
  REQUIRE(tb);
  CHECK(tb->dtype == SafetensorsDType::BF16);
  CHECK(std::memcmp(file.data(*tb).data(), b.data(), 6) == 0);
  CHECK(file.find("c")->dtype == SafetensorsDType::F8_E4M3);
  CHECK(file.find("empty")->bytes() == 0);
  CHECK(file.find("missing") == nullptr);
  // The header is padded to 8 bytes, so the first tensor starts aligned.
  CHECK((8 + SafetensorsLayout(safetensors_layout({{"a", SafetensorsDType::F32, {2, 3}}})).header.size()) % 8 == 0);
  file.release(file.data(*ta));
  CHECK(std::memcmp(file.data(*ta).data(), a.data(), 24) == 0);  // released pages come back from the file
}

TEST_CASE("safetensors: dtype names and sizes") {
  for (const char* name : {"BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64",
                           "F8_E4M3", "F8_E5M2"}) {
    const auto dtype = parse_safetensors_dtype(name);
    REQUIRE(dtype);
    CHECK(safetensors_dtype_name(*dtype) == name);
  }
  CHECK(!parse_safetensors_dtype("F8"));
  CHECK(safetensors_dtype_size(SafetensorsDType::F64) == 8);
  CHECK(safetensors_dtype_size(SafetensorsDType::F8_E5M2) == 1);
  CHECK(dsv3_dtype(SafetensorsDType::BF16) == DType::bf16);
  CHECK(!dsv3_dtype(SafetensorsDType::F16));
  CHECK(safetensors_dtype(DType::fp8_e4m3) == SafetensorsDType::F8_E4M3);
}

TEST_CASE("safetensors: bad files are refused with the file and tensor named") {
  ScratchDirectory dir("safetensors-bad");
  const auto open = [&](const std::filesystem::path& path) { return SafetensorsFile::open(path); };
  const auto header = [&](const std::string& text, std::size_t data) { return raw_file(dir, "bad.safetensors", text, data); };

  {
    std::ofstream(dir / "short.safetensors") << "abc";
    CHECK_ERROR_CONTAINS(open(dir / "short.safetensors"), "short.safetensors", "too short");
  }
  {
    const auto path = header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8);
    std::filesystem::resize_file(path, 20);  // the header itself is cut
    CHECK_ERROR_CONTAINS(open(path), "bad.safetensors", "header length", "beyond the end of the file");
  }
  {
    const auto path = header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8);
    std::filesystem::resize_file(path, std::filesystem::file_size(path) - 3);  // truncated data
    CHECK_ERROR_CONTAINS(open(path), "bad.safetensors", "'a'", "beyond the data buffer");
  }
  CHECK_ERROR_CONTAINS(open(header(R"({"a":{"dtype":"F32","shape":[2],"data_off)", 8)), "bad.safetensors",
                       "not valid JSON");
  CHECK_ERROR_CONTAINS(open(header(R"([1, 2])", 0)), "bad.safetensors", "not a JSON object");
  CHECK_ERROR_CONTAINS(open(header(R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", 8)),
                       "bad.safetensors", "'a'", "unknown dtype \"F33\"");
  CHECK_ERROR_CONTAINS(open(header(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)),
                       "bad.safetensors", "'a'", "hold 8 bytes", "needs 12");
  CHECK_ERROR_CONTAINS(open(header(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8)),
                       "bad.safetensors", "'a'", "shape", "not a non-negative integer");
  CHECK_ERROR_CONTAINS(open(header(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8)),
                       "bad.safetensors", "'a'", "not a non-negative integer");
  CHECK_ERROR_CONTAINS(
      open(header(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8)),
      "bad.safetensors", "'a'", "overflows");
  CHECK_ERROR_CONTAINS(open(header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8)),
                       "bad.safetensors", "'a'", "end before they begin");
  CHECK_ERROR_CONTAINS(open(header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8)),
                       "bad.safetensors", "'a'", "not [begin, end]");
  CHECK_ERROR_CONTAINS(open(header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8)),
                       "bad.safetensors", "'a'", "unknown field 'x'");
  CHECK_ERROR_CONTAINS(open(header(R"({"a":{"dtype":"F32","shape":[2]}})", 8)), "bad.safetensors", "'a'",
                       "no 'data_offsets'");
  CHECK_ERROR_CONTAINS(open(header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                   R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                   12)),
                       "bad.safetensors", "'b'", "overlap tensor 'a'");
  CHECK_ERROR_CONTAINS(open(header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                   R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
                                   20)),
                       "bad.safetensors", "'b'", "hole of 4 bytes after tensor 'a'");
  CHECK_ERROR_CONTAINS(open(header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12)),
                       "bad.safetensors", "'a'", "hole of 4 bytes after the header");
  CHECK_ERROR_CONTAINS(open(header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 10)),
                       "bad.safetensors", "2 bytes at the end belong to no tensor");
  CHECK_ERROR_CONTAINS(open(header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                   R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                                   16)),
                       "bad.safetensors", "'a' twice", "duplicate tensor name");
  CHECK_ERROR_CONTAINS(open(header(R"({"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8)),
                       "bad.safetensors", "'dtype' twice");
  CHECK_ERROR_CONTAINS(open(header(R"({"a":{"dtype":"F32","shape":[[2]],"data_offsets":[0,8]}})", 8)),
                       "bad.safetensors", "deeper");
  CHECK_ERROR_CONTAINS(open(header(std::string(100000, '[') + std::string(100000, ']'), 0)), "bad.safetensors",
                       "deeper");
  CHECK_ERROR_CONTAINS(open(header(R"({"__metadata__":{"format":1}})", 0)), "bad.safetensors", "__metadata__",
                       "not a string");
  // Padding with spaces is allowed, as an empty file of tensors.
  CHECK(open(header(R"({"__metadata__":{"format":"pt"}}    )", 0)).tensors().empty());
}

TEST_CASE("safetensors: checkpoints of one file or of shards with an index") {
  ScratchDirectory dir("safetensors-index");
  const std::vector<float> a = {1, 2}, b = {3, 4, 5};
  std::filesystem::create_directories(dir / "single");
  write_safetensors(dir / "single" / kSafetensorsSingleName, {{"a", SafetensorsDType::F32, {2}}}, {bytes_of(a)});
  const SafetensorsCheckpoint single = SafetensorsCheckpoint::open(dir / "single");
  CHECK(single.names() == std::vector<std::string>{"a"});
  CHECK(single.find("a").tensor->numel() == 2);
  CHECK_ERROR_CONTAINS(single.find("b"), "single", "no tensor 'b'");

  std::filesystem::create_directories(dir / "sharded");
  write_safetensors(dir / "sharded" / safetensors_shard_name(1, 2), {{"a", SafetensorsDType::F32, {2}}},
                    {bytes_of(a)});
  write_safetensors(dir / "sharded" / safetensors_shard_name(2, 2), {{"b", SafetensorsDType::F32, {3}}},
                    {bytes_of(b)});
  write_safetensors_index(dir / "sharded", 20,
                          {{"a", safetensors_shard_name(1, 2)}, {"b", safetensors_shard_name(2, 2)},
                           {"c", safetensors_shard_name(2, 2)}});
  const SafetensorsCheckpoint sharded = SafetensorsCheckpoint::open(dir / "sharded");
  CHECK(safetensors_shard_name(2, 2) == "model-00002-of-00002.safetensors");
  CHECK(sharded.names() == std::vector<std::string>{"a", "b", "c"});
  const auto located = sharded.find("b");
  CHECK(std::memcmp(located.file->data(*located.tensor).data(), b.data(), 12) == 0);
  CHECK_ERROR_CONTAINS(sharded.find("c"), "index puts tensor 'c'", "model-00002-of-00002.safetensors",
                       "does not hold it");

  std::filesystem::create_directories(dir / "escape");
  std::ofstream(dir / "escape" / kSafetensorsIndexName) << R"({"weight_map": {"a": "../single/model.safetensors"}})";
  CHECK_ERROR_CONTAINS(SafetensorsCheckpoint::open(dir / "escape"), "weight_map['a']", "not a file name");
  std::filesystem::create_directories(dir / "none");
  CHECK_ERROR_CONTAINS(SafetensorsCheckpoint::open(dir / "none"), "neither");
}
