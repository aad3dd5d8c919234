// Token datasets: written on 1 or 2 ranks and read back; every broken file gives an error that names the file
// and what is wrong.
#include "dsv3/core/error.hpp"
#include "dsv3/io/hdf5.hpp"
#include "dsv3/io/token_dataset.hpp"
#include "io/io_testing.hpp"
#include "support/testing.hpp"

#include <doctest/doctest.h>
#include <mpi.h>

#include <fstream>
#include <vector>

using namespace dsv3;
using namespace dsv3::io;
using dsv3::testing::ScratchDirectory;

namespace {

using dsv3::testing::world_rank;

const TokenizerIdentity kTokenizer{"fingerprint-of-test-tokenizer", 100, 1, 2};

// Three documents: [1 10 11 2] [1 2] [1 20 21 22 2].
const std::vector<std::int32_t> kTokens = {1, 10, 11, 2, 1, 2, 1, 20, 21, 22, 2};
const std::vector<std::int64_t> kLengths = {4, 2, 5};
const std::vector<std::int64_t> kOffsets = {0, 4, 6, 11};

TokenDatasetMetadata metadata() { return {kTokenizer, "three test documents", 7}; }

void write_on_this_rank(const std::filesystem::path& path) {
  write_token_dataset(path, MPI_COMM_SELF, metadata(), kTokens, kLengths);
}

// A file of the token-dataset layout, written with the plain wrappers so a test can break one thing in it.
struct RawDataset {
  std::vector<std::int32_t> tokens = kTokens;
  std::vector<std::int64_t> offsets = kOffsets;
  std::int64_t version = kTokenDatasetFormatVersion;
  DType token_dtype = DType::i32;  // stored type; the values are converted
  bool with_offsets = true;

  void write(const std::filesystem::path& path) const {
    const h5::File file = h5::File::open(path, h5::File::Mode::create);
    file.write_string_attribute("format", "dsv3-token-dataset");
    file.write_int_attribute("format_version", version);
    file.write_string_attribute("tokenizer_fingerprint", kTokenizer.fingerprint);
    file.write_int_attribute("vocab_size", kTokenizer.vocab_size);
    file.write_int_attribute("bos_id", kTokenizer.bos_id);
    file.write_int_attribute("eos_id", kTokenizer.eos_id);
    file.write_string_attribute("source", "raw");
    file.write_int_attribute("empty_documents_skipped", 0);
    const std::int64_t token_shape[] = {static_cast<std::int64_t>(tokens.size())};
    file.create_dataset("tokens", token_dtype, token_shape)
        .write(h5::Hyperslab::range(0, token_shape[0]), std::span(tokens));
    if (with_offsets) {
      const std::int64_t offset_shape[] = {static_cast<std::int64_t>(offsets.size())};
      file.create_dataset("document_offsets", DType::i64, offset_shape)
          .write(h5::Hyperslab::range(0, offset_shape[0]), std::span(offsets));
    }
  }
};

void check_open_fails(const std::filesystem::path& path, const std::string& reason) {
  CHECK_ERROR_CONTAINS(TokenDataset::open(path), path.string() + ": ", reason);
}

}  // namespace

TEST_CASE("round trip: tokens, offsets and metadata") {
  ScratchDirectory scratch("token-dataset-round-trip");
  if (world_rank() != 0) return;
  const auto path = scratch / "nested" / "data.h5";
  write_on_this_rank(path);
  CHECK(std::filesystem::exists(path));
  CHECK_FALSE(std::filesystem::exists(path.string() + ".partial"));

  const TokenDataset dataset = TokenDataset::open(path);
  CHECK(dataset.n_tokens() == 11);
  CHECK(dataset.n_documents() == 3);
  CHECK(dataset.metadata().tokenizer == kTokenizer);
  CHECK(dataset.metadata().source == "three test documents");
  CHECK(dataset.metadata().empty_documents_skipped == 7);
  std::vector<std::int32_t> tokens(11);
  dataset.read_tokens(0, tokens);
  CHECK(tokens == kTokens);
  std::vector<std::int32_t> middle(3);
  dataset.read_tokens(5, middle);
  CHECK(middle == std::vector<std::int32_t>{2, 1, 20});
  std::vector<std::int64_t> offsets(4);
  dataset.read_document_offsets(0, offsets);
  CHECK(offsets == kOffsets);
  CHECK_NOTHROW(dataset.require_tokenizer(kTokenizer));
  CHECK_ERROR_CONTAINS(dataset.read_tokens(9, middle), path.string(), "tokens [9, 12) requested");
}

TEST_CASE("two ranks write one file; a rank may hold no document") {
  ScratchDirectory scratch("token-dataset-parallel");
  int rank = 0;
  int size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  // Rank 0 holds the first two documents, the last rank the third, any rank between nothing.
  std::span<const std::int32_t> tokens;
  std::span<const std::int64_t> lengths;
  if (rank == 0) {
    tokens = std::span(kTokens).first(6);
    lengths = std::span(kLengths).first(2);
  }
  if (rank == size - 1) {
    tokens = size == 1 ? std::span(kTokens) : std::span(kTokens).subspan(6);
    lengths = size == 1 ? std::span(kLengths) : std::span(kLengths).subspan(2);
  }
  const auto parallel_path = scratch / "parallel.h5";
  write_token_dataset(parallel_path, MPI_COMM_WORLD, metadata(), tokens, lengths);
  if (rank != 0) return;
  const auto serial_path = scratch / "serial.h5";
  write_on_this_rank(serial_path);
  const TokenDataset dataset = TokenDataset::open(parallel_path);
  std::vector<std::int32_t> all(11);
  dataset.read_tokens(0, all);
  CHECK(all == kTokens);
  std::vector<std::int64_t> offsets(4);
  dataset.read_document_offsets(0, offsets);
  CHECK(offsets == kOffsets);
  // HDF5 lays out the same content identically whatever wrote it.
  std::ifstream serial(serial_path, std::ios::binary);
  std::ifstream parallel(parallel_path, std::ios::binary);
  const std::string serial_bytes{std::istreambuf_iterator<char>(serial), {}};
  const std::string parallel_bytes{std::istreambuf_iterator<char>(parallel), {}};
  CHECK(serial_bytes == parallel_bytes);
}

TEST_CASE("the writer refuses badly packed documents on every rank") {
  ScratchDirectory scratch("token-dataset-bad-packing");
  const auto path = scratch / "bad.h5";
  const std::vector<std::int32_t> no_eos = {1, 10, 11};
  const std::vector<std::int64_t> length = {3};
  CHECK_ERROR_CONTAINS(write_token_dataset(path, MPI_COMM_WORLD, metadata(), no_eos, length),
                       "does not start with BOS 1 and end with EOS 2");
  const std::vector<std::int32_t> outside = {1, 100, 2};
  CHECK_ERROR_CONTAINS(write_token_dataset(path, MPI_COMM_WORLD, metadata(), outside, length),
                       "token id 100 (local index 1) is outside the vocabulary [0, 100)");
  const std::vector<std::int64_t> first_document_only = {4};
  CHECK_ERROR_CONTAINS(write_token_dataset(path, MPI_COMM_WORLD, metadata(), kTokens, first_document_only),
                       "lengths add up to 4 but 11 tokens");
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("wrong tokenizer: the error names the file and both tokenizers") {
  ScratchDirectory scratch("token-dataset-fingerprint");
  if (world_rank() != 0) return;
  const auto path = scratch / "data.h5";
  write_on_this_rank(path);
  const TokenDataset dataset = TokenDataset::open(path);
  TokenizerIdentity other = kTokenizer;
  other.fingerprint = "another-fingerprint";
  CHECK_ERROR_CONTAINS(dataset.require_tokenizer(other),
                       path.string() +
                           ": this token dataset was made with another tokenizer (fingerprint "
                           "fingerprint-of-test-tokenizer",
                       "than the run's (fingerprint another-fingerprint");
  other = kTokenizer;
  other.vocab_size = 129280;
  CHECK_ERROR_CONTAINS(dataset.require_tokenizer(other), "vocab 100", "vocab 129280");
}

TEST_CASE("truncated and corrupted files") {
  ScratchDirectory scratch("token-dataset-broken-files");
  if (world_rank() != 0) return;
  const auto truncated = scratch / "truncated.h5";
  write_on_this_rank(truncated);
  std::filesystem::resize_file(truncated, std::filesystem::file_size(truncated) / 2);
  check_open_fails(truncated, "truncated file");

  // Overwrite the superblock signature.
  const auto no_signature = scratch / "no_signature.h5";
  write_on_this_rank(no_signature);
  {
    std::fstream file(no_signature, std::ios::in | std::ios::out | std::ios::binary);
    file.write("GARBAGE!", 8);
  }
  check_open_fails(no_signature, "cannot open as HDF5");

  // A token id beyond the vocabulary is found by the read that meets it.
  const auto bad_ids = scratch / "bad_ids.h5";
  RawDataset raw;
  raw.tokens[7] = 5000;
  raw.write(bad_ids);
  const TokenDataset dataset = TokenDataset::open(bad_ids);
  std::vector<std::int32_t> window(4);
  CHECK_NOTHROW(dataset.read_tokens(0, window));
  CHECK_ERROR_CONTAINS(dataset.read_tokens(6, window),
                       bad_ids.string() + ": /tokens[7] = 5000 is outside the vocabulary [0, 100)");
}

TEST_CASE("missing datasets, wrong version, inconsistent offsets") {
  ScratchDirectory scratch("token-dataset-inconsistent");
  if (world_rank() != 0) return;
  const auto write_and_check = [&](const std::string& name, const RawDataset& raw, const std::string& reason) {
    const auto path = scratch / (name + ".h5");
    raw.write(path);
    check_open_fails(path, reason);
  };
  {
    RawDataset raw;
    CHECK_NOTHROW(raw.write(scratch / "valid.h5"));
    CHECK_NOTHROW(TokenDataset::open(scratch / "valid.h5"));
  }
  {
    RawDataset raw;
    raw.with_offsets = false;
    write_and_check("no_offsets", raw, "dataset '/document_offsets' is missing");
  }
  {
    RawDataset raw;
    raw.version = 2;
    write_and_check("version", raw, "token dataset format version 2; this build of dsv3 reads version 1");
  }
  {
    RawDataset raw;
    raw.offsets = {0, 6, 4, 11};
    write_and_check("not_monotone", raw, "/document_offsets[2] = 4 after 6: offsets must increase");
  }
  {
    RawDataset raw;
    raw.offsets = {1, 4, 6, 11};
    write_and_check("first_not_zero", raw, "/document_offsets[0] is 1, must be 0");
  }
  {
    RawDataset raw;
    raw.offsets = {0, 4, 6, 10};
    write_and_check("short_of_the_end", raw, "the last document offset is 10 but /tokens holds 11 tokens");
  }
  {
    RawDataset raw;
    raw.offsets = {0, 4, 6, 12};
    write_and_check("beyond_the_end", raw, "/document_offsets[3] = 12 lies beyond the 11 tokens");
  }
  {
    const auto path = scratch / "not_a_token_dataset.h5";
    h5::File::open(path, h5::File::Mode::create).write_int_attribute("something", 1);
    check_open_fails(path, "not a dsv3 token dataset");
  }
  {
    RawDataset raw;
    raw.token_dtype = DType::f32;
    write_and_check("float_tokens", raw, "dataset '/tokens' must be a 1-D i32 vector");
  }
}
