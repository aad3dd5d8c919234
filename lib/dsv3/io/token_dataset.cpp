#include "dsv3/io/token_dataset.hpp"

#include "dsv3/core/error.hpp"
#include "dsv3/io/collective.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <vector>

namespace dsv3::io {

namespace {

constexpr std::string_view kFormatName = "dsv3-token-dataset";
constexpr std::string_view kTokens = "/tokens";
constexpr std::string_view kDocumentOffsets = "/document_offsets";
// Offsets are validated this many at a time, so opening a large corpus never holds all of them at once.
constexpr std::int64_t kOffsetsPerRead = std::int64_t{1} << 20;

std::int64_t exclusive_prefix_sum(std::int64_t value, MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  std::int64_t prefix = 0;
  MPI_Exscan(&value, &prefix, 1, MPI_INT64_T, MPI_SUM, comm);
  return rank == 0 ? 0 : prefix;  // MPI leaves rank 0's result undefined
}

std::int64_t total(std::int64_t value, MPI_Comm comm) {
  MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_INT64_T, MPI_SUM, comm);
  return value;
}

// The packing rules of the format, checked on the writer's side so that a bad document never reaches a file.
void check_packed_documents(const TokenizerIdentity& tokenizer, std::span<const std::int32_t> tokens,
                            std::span<const std::int64_t> document_lengths) {
  DSV3_CHECK(tokenizer.vocab_size > 0 && tokenizer.bos_id >= 0 && tokenizer.bos_id < tokenizer.vocab_size &&
                 tokenizer.eos_id >= 0 && tokenizer.eos_id < tokenizer.vocab_size,
             "token dataset: the tokenizer needs a vocabulary with BOS and EOS ids inside it ({})",
             tokenizer.describe());
  std::int64_t begin = 0;
  for (std::size_t document = 0; document < document_lengths.size(); ++document) {
    const std::int64_t length = document_lengths[document];
    DSV3_CHECK(length >= 2 && begin + length <= static_cast<std::int64_t>(tokens.size()),
               "token dataset: local document {} has length {} (documents are at least BOS and EOS, and lie within "
               "the {} tokens given)",
               document, length, tokens.size());
    DSV3_CHECK(tokens[begin] == tokenizer.bos_id && tokens[begin + length - 1] == tokenizer.eos_id,
               "token dataset: local document {} does not start with BOS {} and end with EOS {}", document,
               tokenizer.bos_id, tokenizer.eos_id);
    begin += length;
  }
  DSV3_CHECK(begin == static_cast<std::int64_t>(tokens.size()),
             "token dataset: the document lengths add up to {} but {} tokens were given", begin, tokens.size());
  const auto outside =
      std::find_if(tokens.begin(), tokens.end(), [&](std::int32_t id) { return id < 0 || id >= tokenizer.vocab_size; });
  DSV3_CHECK(outside == tokens.end(), "token dataset: token id {} (local index {}) is outside the vocabulary [0, {})",
             outside == tokens.end() ? 0 : *outside, outside - tokens.begin(), tokenizer.vocab_size);
}

}  // namespace

std::string TokenizerIdentity::describe() const {
  return fmt::format("fingerprint {}, vocab {}, BOS {}, EOS {}", fingerprint.empty() ? "(none)" : fingerprint,
                     vocab_size, bos_id, eos_id);
}

void write_token_dataset(const std::filesystem::path& path, MPI_Comm comm, const TokenDatasetMetadata& metadata,
                         std::span<const std::int32_t> tokens, std::span<const std::int64_t> document_lengths) {
  int rank = 0;
  int size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const std::filesystem::path partial = path.string() + ".partial";
  agree_on_failure(comm, [&] {
    check_packed_documents(metadata.tokenizer, tokens, document_lengths);
    if (rank == 0 && path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  });

  const auto local_tokens = static_cast<std::int64_t>(tokens.size());
  const auto local_documents = static_cast<std::int64_t>(document_lengths.size());
  const std::int64_t first_token = exclusive_prefix_sum(local_tokens, comm);
  const std::int64_t first_document = exclusive_prefix_sum(local_documents, comm);
  const std::int64_t n_tokens = total(local_tokens, comm);
  const std::int64_t n_documents = total(local_documents, comm);

  // This rank's offsets; the last rank also writes the closing entry, n_tokens.
  std::vector<std::int64_t> offsets(document_lengths.size() + (rank == size - 1 ? 1 : 0));
  std::int64_t next = first_token;
  for (std::size_t document = 0; document < offsets.size(); ++document) {
    offsets[document] = next;
    if (document < document_lengths.size()) next += document_lengths[document];
  }
  {
    const h5::File file = h5::File::open(partial, h5::File::Mode::create, comm);
    file.write_string_attribute("format", kFormatName);
    file.write_int_attribute("format_version", kTokenDatasetFormatVersion);
    file.write_string_attribute("tokenizer_fingerprint", metadata.tokenizer.fingerprint);
    file.write_int_attribute("vocab_size", metadata.tokenizer.vocab_size);
    file.write_int_attribute("bos_id", metadata.tokenizer.bos_id);
    file.write_int_attribute("eos_id", metadata.tokenizer.eos_id);
    file.write_string_attribute("source", metadata.source);
    file.write_int_attribute("empty_documents_skipped", metadata.empty_documents_skipped);
    const std::int64_t token_shape[] = {n_tokens};
    const std::int64_t offsets_shape[] = {n_documents + 1};
    file.create_dataset(kTokens, DType::i32, token_shape)
        .write(h5::Hyperslab::range(first_token, local_tokens), tokens);
    file.create_dataset(kDocumentOffsets, DType::i64, offsets_shape)
        .write(h5::Hyperslab::range(first_document, static_cast<std::int64_t>(offsets.size())),
               std::span<const std::int64_t>(offsets));
    file.flush();
  }  // closed (collectively) here
  agree_on_failure(comm, [&] {
    if (rank == 0) std::filesystem::rename(partial, path);
  });
}

// ---- reading -----------------------------------------------------------------------------------------------

TokenDataset::TokenDataset(h5::File file, h5::Dataset tokens, h5::Dataset offsets)
    : file_(std::move(file)), tokens_(std::move(tokens)), offsets_(std::move(offsets)) {}

TokenDataset TokenDataset::open(const std::filesystem::path& path) {
  h5::File file = h5::File::open(path, h5::File::Mode::read);
  const std::string name = path.string();
  const auto string_attribute_or_empty = [&](std::string_view key) {
    return file.has_attribute(key) ? file.read_string_attribute(key) : std::string();
  };
  const std::string format = string_attribute_or_empty("format");
  DSV3_CHECK(format == kFormatName, "{}: not a dsv3 token dataset (attribute 'format' is '{}', expected '{}')", name,
             format, kFormatName);
  const std::int64_t version = file.read_int_attribute("format_version");
  DSV3_CHECK(version == kTokenDatasetFormatVersion,
             "{}: token dataset format version {}; this build of dsv3 reads version {} (re-run dsv3_preprocess "
             "tokenize)",
             name, version, kTokenDatasetFormatVersion);

  const auto open_vector = [&](std::string_view dataset_name, DType dtype) {
    h5::Dataset dataset = file.open_dataset(dataset_name);
    const std::optional<DType> stored = dataset.dtype();
    DSV3_CHECK(dataset.shape().size() == 1 && stored == dtype, "{}: dataset '{}' must be a 1-D {} vector", name,
               dataset_name, dtype_name(dtype));
    return dataset;
  };
  h5::Dataset tokens = open_vector(kTokens, DType::i32);
  h5::Dataset offsets = open_vector(kDocumentOffsets, DType::i64);

  TokenDataset dataset(std::move(file), std::move(tokens), std::move(offsets));
  TokenDatasetMetadata& metadata = dataset.metadata_;
  const h5::File& root = dataset.file_;
  metadata.tokenizer.fingerprint = root.read_string_attribute("tokenizer_fingerprint");
  metadata.tokenizer.vocab_size = root.read_int_attribute("vocab_size");
  metadata.tokenizer.bos_id = static_cast<std::int32_t>(root.read_int_attribute("bos_id"));
  metadata.tokenizer.eos_id = static_cast<std::int32_t>(root.read_int_attribute("eos_id"));
  metadata.source = root.read_string_attribute("source");
  metadata.empty_documents_skipped = root.read_int_attribute("empty_documents_skipped");
  const TokenizerIdentity& tokenizer = metadata.tokenizer;
  DSV3_CHECK(tokenizer.vocab_size > 0 && tokenizer.bos_id >= 0 && tokenizer.bos_id < tokenizer.vocab_size &&
                 tokenizer.eos_id >= 0 && tokenizer.eos_id < tokenizer.vocab_size,
             "{}: inconsistent tokenizer attributes ({}): BOS and EOS must lie in [0, vocab_size)", name,
             tokenizer.describe());

  dataset.n_tokens_ = dataset.tokens_.numel();
  dataset.n_documents_ = dataset.offsets_.numel() - 1;
  DSV3_CHECK(dataset.n_documents_ >= 0, "{}: dataset '{}' is empty; it needs n_documents + 1 entries", name,
             kDocumentOffsets);
  dataset.validate_document_offsets();
  return dataset;
}

void TokenDataset::validate_document_offsets() const {
  std::vector<std::int64_t> chunk;
  std::int64_t previous = 0;
  for (std::int64_t begin = 0; begin <= n_documents_; begin += kOffsetsPerRead) {
    chunk.resize(static_cast<std::size_t>(std::min(kOffsetsPerRead, n_documents_ + 1 - begin)));
    read_document_offsets(begin, chunk);
    for (std::size_t i = 0; i < chunk.size(); ++i) {
      const std::int64_t index = begin + static_cast<std::int64_t>(i);
      const std::int64_t offset = chunk[i];
      DSV3_CHECK(index > 0 || offset == 0, "{}: {}[0] is {}, must be 0", path().string(), kDocumentOffsets, offset);
      DSV3_CHECK(index == 0 || offset - previous >= 2,
                 "{}: {}[{}] = {} after {}: offsets must increase by at least 2 (BOS and EOS) per document",
                 path().string(), kDocumentOffsets, index, offset, previous);
      DSV3_CHECK(offset <= n_tokens_, "{}: {}[{}] = {} lies beyond the {} tokens of {}", path().string(),
                 kDocumentOffsets, index, offset, n_tokens_, kTokens);
      previous = offset;
    }
  }
  DSV3_CHECK(previous == n_tokens_, "{}: the last document offset is {} but {} holds {} tokens", path().string(),
             previous, kTokens, n_tokens_);
}

void TokenDataset::require_tokenizer(const TokenizerIdentity& run_tokenizer) const {
  DSV3_CHECK(metadata_.tokenizer == run_tokenizer,
             "{}: this token dataset was made with another tokenizer ({}) than the run's ({}); tokenize the corpus "
             "again with dsv3_preprocess tokenize and the run's tokenizer",
             path().string(), metadata_.tokenizer.describe(), run_tokenizer.describe());
}

void TokenDataset::read_tokens(std::int64_t begin, std::span<std::int32_t> out) const {
  const auto count = static_cast<std::int64_t>(out.size());
  DSV3_CHECK(begin >= 0 && begin + count <= n_tokens_, "{}: tokens [{}, {}) requested from {} of {} tokens",
             path().string(), begin, begin + count, kTokens, n_tokens_);
  tokens_.read(h5::Hyperslab::range(begin, count), out, h5::Transfer::independent);
  const std::int64_t vocab_size = metadata_.tokenizer.vocab_size;
  const auto outside =
      std::find_if(out.begin(), out.end(), [&](std::int32_t id) { return id < 0 || id >= vocab_size; });
  DSV3_CHECK(outside == out.end(), "{}: {}[{}] = {} is outside the vocabulary [0, {}): the file is corrupted",
             path().string(), kTokens, begin + (outside - out.begin()), outside == out.end() ? 0 : *outside,
             vocab_size);
}

void TokenDataset::read_document_offsets(std::int64_t begin, std::span<std::int64_t> out) const {
  const auto count = static_cast<std::int64_t>(out.size());
  DSV3_CHECK(begin >= 0 && begin + count <= n_documents_ + 1, "{}: offsets [{}, {}) requested from {} of {} entries",
             path().string(), begin, begin + count, kDocumentOffsets, n_documents_ + 1);
  offsets_.read(h5::Hyperslab::range(begin, count), out, h5::Transfer::independent);
}

}  // namespace dsv3::io
