// Token datasets: a tokenized corpus in one HDF5 file, stored exactly as the trainer consumes it (torchtitan's
// packing, REFERENCE.md §3), so that a training window is one contiguous slice of one dataset.
//
//   /tokens            i32 [n_tokens]         every document as BOS, its token ids, EOS; documents
//                                             concatenated in corpus order
//   /document_offsets  i64 [n_documents + 1]  offsets[d] = index of document d's BOS; offsets[n_documents] =
//                                             n_tokens
//   attributes of /    format = "dsv3-token-dataset", format_version = 1, tokenizer_fingerprint, vocab_size,
//                      bos_id, eos_id, source (what it was made from), empty_documents_skipped
//
// A file made from the same documents with the same tokenizer is byte-identical whatever the number of ranks
// that wrote it. h5ls/h5dump/h5py read it as is.
#pragma once

#include "dsv3/io/hdf5.hpp"

#include <mpi.h>

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

namespace dsv3::io {

inline constexpr std::int64_t kTokenDatasetFormatVersion = 1;

// Which tokenizer made the ids: token ids mean nothing with another tokenizer.
struct TokenizerIdentity {
  std::string fingerprint;
  std::int64_t vocab_size = 0;
  std::int32_t bos_id = -1;
  std::int32_t eos_id = -1;

  bool operator==(const TokenizerIdentity&) const = default;
  std::string describe() const;  // "fingerprint 1a2b…, vocab 2048, BOS 0, EOS 1"
};

struct TokenDatasetMetadata {
  TokenizerIdentity tokenizer;
  std::string source;  // what the dataset was made from, for people reading the file
  std::int64_t empty_documents_skipped = 0;
};

// Collective over `comm`. Each rank passes the documents it holds, packed (`tokens`: BOS, ids, EOS per
// document; `document_lengths` sums to tokens.size()); ranks hold consecutive runs of documents in rank order,
// and a rank may hold none. Every document is checked (BOS first, EOS last, ids in the vocabulary) before
// anything is written. The file appears at `path` only when complete: it is written as "<path>.partial" and
// renamed.
void write_token_dataset(const std::filesystem::path& path, MPI_Comm comm, const TokenDatasetMetadata& metadata,
                         std::span<const std::int32_t> tokens, std::span<const std::int64_t> document_lengths);

// A token dataset opened for reading by one rank. open() checks the format version, the datasets and their
// types, the attributes and every document offset (monotone, within bounds, each document at least BOS and
// EOS); each read checks its ids against the vocabulary. Every error names the file and what is wrong.
class TokenDataset {
 public:
  static TokenDataset open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return file_.file_path(); }
  const TokenDatasetMetadata& metadata() const { return metadata_; }
  std::int64_t n_tokens() const { return n_tokens_; }
  std::int64_t n_documents() const { return n_documents_; }

  // An error naming the file and both tokenizers when the dataset was made with another tokenizer than the
  // run's.
  void require_tokenizer(const TokenizerIdentity& run_tokenizer) const;

  // tokens [begin, begin + out.size()).
  void read_tokens(std::int64_t begin, std::span<std::int32_t> out) const;
  // document_offsets [begin, begin + out.size()).
  void read_document_offsets(std::int64_t begin, std::span<std::int64_t> out) const;

 private:
  TokenDataset(h5::File file, h5::Dataset tokens, h5::Dataset offsets);
  void validate_document_offsets() const;

  h5::File file_;
  h5::Dataset tokens_;
  h5::Dataset offsets_;
  TokenDatasetMetadata metadata_;
  std::int64_t n_tokens_ = 0;
  std::int64_t n_documents_ = 0;
};

}  // namespace dsv3::io
