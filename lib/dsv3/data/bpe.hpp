// The BPE model of a byte-level tokenizer: a vocabulary and a ranked list of merges, applied to one
// pre-tokenized word at a time. Words arrive as raw bytes; each byte starts as the token of its byte-level
// character, and the pair of adjacent tokens with the lowest merge rank (leftmost on ties) is merged until
// no pair has a merge — the result `tokenizers` computes, with the same handling of unk_token, fuse_unk,
// byte_fallback and ignore_merges. Each thread keeps a cache of recently encoded words.
#pragma once

#include "dsv3/data/string_map.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3::data {

// (left id, right id) → (rank, merged id), open addressing: looked up for every adjacent pair of every word.
class MergeTable {
 public:
  struct Merge {
    std::uint32_t rank;
    std::int32_t merged_id;
  };
  explicit MergeTable(std::size_t expected_entries = 0);
  void insert_or_assign(std::int32_t left, std::int32_t right, Merge merge);
  const Merge* find(std::int32_t left, std::int32_t right) const;

 private:
  static constexpr std::uint64_t kEmpty = ~std::uint64_t{0};  // ids are below 2^31, so no key is all ones
  struct Slot {
    std::uint64_t key = kEmpty;
    Merge merge{};
  };
  std::size_t slot_of(std::uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }
  std::vector<Slot> slots_;
  int shift_;
};

class BpeModel {
 public:
  // From the "model" value of a tokenizer.json (type BPE); errors name `source` (the file).
  static BpeModel from_json(const nlohmann::json& model, const std::string& source);

  // Appends the ids of `word` (raw bytes of one pre-tokenized word) to `ids`.
  void encode_word(std::string_view word, std::vector<std::int32_t>& ids) const;

  // Lookups by the token as the vocabulary writes it (byte-level characters).
  std::optional<std::int32_t> token_to_id(std::string_view token) const;
  const std::string* id_to_token(std::int32_t id) const;  // nullptr when no token has this id
  // Number of vocabulary entries (what `tokenizers` calls the model's vocab size).
  std::size_t entry_count() const { return vocab_.size(); }
  std::int32_t max_id() const { return static_cast<std::int32_t>(tokens_.size()) - 1; }

 private:
  // What one input byte contributes before any merge: the token of its byte-level character, or failing
  // that the <0xXX> tokens of that character's UTF-8 bytes (byte_fallback), or else the unknown token.
  struct ByteSymbol {
    std::int32_t id = -1;
    std::vector<std::int32_t> fallback_ids;  // empty unless byte_fallback and every <0xXX> exists
  };
  BpeModel() = default;
  void initial_symbols(std::string_view word, std::vector<std::int32_t>& symbols) const;
  void merge(std::vector<std::int32_t>& symbols) const;

  StringMap<std::int32_t> vocab_;
  std::vector<std::optional<std::string>> tokens_;  // by id
  MergeTable merges_;
  std::array<ByteSymbol, 256> byte_symbols_;
  std::optional<std::string> unk_token_;
  std::optional<std::int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  StringMap<std::int32_t> raw_vocab_;  // raw bytes → id, for ignore_merges
  std::uint64_t cache_owner_ = 0;      // identifies this vocabulary to the per-thread word caches
};

}  // namespace dsv3::data
