#include "dsv3/data/bpe.hpp"

#include "dsv3/core/error.hpp"
#include "dsv3/data/byte_level.hpp"
#include "dsv3/data/json_fields.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <limits>

namespace dsv3::data {

using nlohmann::json;

MergeTable::MergeTable(std::size_t expected_entries) {
  const std::size_t capacity = std::bit_ceil(std::max<std::size_t>(16, expected_entries * 2));
  slots_.resize(capacity);
  shift_ = 64 - std::countr_zero(capacity);
}

void MergeTable::insert_or_assign(std::int32_t left, std::int32_t right, Merge merge) {
  const std::uint64_t key = (std::uint64_t(std::uint32_t(left)) << 32) | std::uint32_t(right);
  for (std::size_t slot = slot_of(key);; slot = (slot + 1) & (slots_.size() - 1)) {
    if (slots_[slot].key == kEmpty || slots_[slot].key == key) {
      slots_[slot] = {key, merge};
      return;
    }
  }
}

const MergeTable::Merge* MergeTable::find(std::int32_t left, std::int32_t right) const {
  const std::uint64_t key = (std::uint64_t(std::uint32_t(left)) << 32) | std::uint32_t(right);
  for (std::size_t slot = slot_of(key);; slot = (slot + 1) & (slots_.size() - 1)) {
    if (slots_[slot].key == key) return &slots_[slot].merge;
    if (slots_[slot].key == kEmpty) return nullptr;
  }
}

namespace {

// The merges of a tokenizer.json: ["a b", ...] (older files) or [["a", "b"], ...].
std::vector<std::pair<std::string, std::string>> parse_merges(const json& merges, const std::string& context) {
  DSV3_CHECK(merges.is_array(), "{}: expected an array, found {}", context, merges.type_name());
  std::vector<std::pair<std::string, std::string>> pairs;
  pairs.reserve(merges.size());
  for (std::size_t i = 0; i < merges.size(); ++i) {
    const json& merge = merges[i];
    if (merge.is_string()) {
      const std::string& line = merge.get_ref<const std::string&>();
      if (line.starts_with("#version")) continue;  // a merges.txt header that older converters kept
      const std::size_t space = line.find(' ');
      DSV3_CHECK(space != std::string::npos && line.find(' ', space + 1) == std::string::npos,
                 "{}[{}]: '{}' is not two tokens separated by one space", context, i, line);
      pairs.emplace_back(line.substr(0, space), line.substr(space + 1));
    } else {
      DSV3_CHECK(merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string(),
                 "{}[{}]: expected \"left right\" or [\"left\", \"right\"], found {}", context, i, merge.dump());
      pairs.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
    }
  }
  return pairs;
}

// Per-thread cache of encoded words, for the vocabulary that thread used last.
struct WordCache {
  static constexpr std::size_t kMaxWordBytes = 256;  // long words rarely repeat
  static constexpr std::size_t kMaxEntries = std::size_t{1} << 16;
  std::uint64_t owner = 0;
  StringMap<std::pair<std::uint32_t, std::uint32_t>> spans;  // word → [offset, offset + count) in ids
  std::vector<std::int32_t> ids;
};

// Scratch of the merge loop, reused across words.
struct MergeScratch {
  struct Symbol {
    std::int32_t id;  // -1 once merged into the symbol on its left
    std::int32_t prev, next;  // -1 at the ends
  };
  struct Candidate {
    std::uint32_t rank;
    std::uint32_t pos;
    std::int32_t merged_id;
    // The heap's top is the lowest rank, leftmost on ties.
    bool operator<(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : pos > other.pos;
    }
  };
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;
};

}  // namespace

BpeModel BpeModel::from_json(const json& model, const std::string& source) {
  const std::string context = source + ": model";
  json_fields::require_object(model, context);
  if (const json* type = json_fields::optional_member(model, "type", context)) {
    DSV3_CHECK(type->is_string() && type->get<std::string>() == "BPE",
               "{}: model type {} is not supported (dsv3 supports BPE)", context, type->dump());
  }
  if (const json* dropout = json_fields::optional_member(model, "dropout", context)) {
    DSV3_CHECK(dropout->is_number() && dropout->get<double>() == 0.0,
               "{}.dropout is {}: BPE dropout is random at encode time and is not supported", context, dropout->dump());
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (const json* affix = json_fields::optional_member(model, key, context)) {
      DSV3_CHECK(affix->is_string() && affix->get<std::string>().empty(),
                 "{}.{} is {}: word affixes are not supported with byte-level BPE", context, key, affix->dump());
    }
  }

  BpeModel bpe;
  const json& vocab = json_fields::member(model, "vocab", context);
  DSV3_CHECK(vocab.is_object(), "{}.vocab: expected an object of token: id, found {}", context, vocab.type_name());
  bpe.vocab_.reserve(vocab.size());
  for (const auto& [token, id_value] : vocab.items()) {
    DSV3_CHECK(id_value.is_number_integer() && id_value.get<std::int64_t>() >= 0 &&
                   id_value.get<std::int64_t>() < std::numeric_limits<std::int32_t>::max(),
               "{}.vocab['{}']: id {} is not an integer in [0, 2^31 - 1)", context, token, id_value.dump());
    const auto id = static_cast<std::int32_t>(id_value.get<std::int64_t>());
    if (static_cast<std::size_t>(id) >= bpe.tokens_.size()) bpe.tokens_.resize(id + 1);
    DSV3_CHECK(!bpe.tokens_[id], "{}.vocab: id {} is given to both '{}' and '{}'", context, id, *bpe.tokens_[id], token);
    bpe.tokens_[id] = token;
    bpe.vocab_.emplace(token, id);
  }

  const auto pairs = parse_merges(json_fields::member(model, "merges", context), context + ".merges");
  bpe.merges_ = MergeTable(pairs.size());
  const auto lookup = [&](const std::string& token, std::size_t rank) {
    const auto it = bpe.vocab_.find(token);
    DSV3_CHECK(it != bpe.vocab_.end(), "{}.merges[{}]: token '{}' is not in the vocabulary", context, rank, token);
    return it->second;
  };
  for (std::size_t rank = 0; rank < pairs.size(); ++rank) {
    const auto& [left, right] = pairs[rank];
    const std::int32_t left_id = lookup(left, rank), right_id = lookup(right, rank);
    const std::int32_t merged_id = lookup(left + right, rank);
    // A pair listed twice keeps its last rank, as in `tokenizers`.
    bpe.merges_.insert_or_assign(left_id, right_id, {static_cast<std::uint32_t>(rank), merged_id});
  }

  const bool byte_fallback = json_fields::bool_member(model, "byte_fallback", false, context);
  for (int b = 0; b < 256; ++b) {
    const std::string character = byte_level::encode(std::string(1, static_cast<char>(b)));
    ByteSymbol& symbol = bpe.byte_symbols_[b];
    if (const auto id = bpe.token_to_id(character)) {
      symbol.id = *id;
    } else if (byte_fallback) {
      for (const char byte : character) {
        const auto fallback = bpe.token_to_id(fmt::format("<0x{:02X}>", static_cast<unsigned char>(byte)));
        if (!fallback) {
          symbol.fallback_ids.clear();
          break;
        }
        symbol.fallback_ids.push_back(*fallback);
      }
    }
  }
  if (const json* unk = json_fields::optional_member(model, "unk_token", context)) {
    DSV3_CHECK(unk->is_string(), "{}.unk_token: expected a string or null", context);
    bpe.unk_token_ = unk->get<std::string>();
    bpe.unk_id_ = bpe.token_to_id(*bpe.unk_token_);
  }
  bpe.fuse_unk_ = json_fields::bool_member(model, "fuse_unk", false, context);
  bpe.ignore_merges_ = json_fields::bool_member(model, "ignore_merges", false, context);
  if (bpe.ignore_merges_) {
    for (const auto& [token, id] : bpe.vocab_) {
      if (auto raw = byte_level::decode(token)) bpe.raw_vocab_.emplace(std::move(*raw), id);
    }
  }
  static std::atomic<std::uint64_t> next_owner{1};
  bpe.cache_owner_ = next_owner++;
  return bpe;
}

std::optional<std::int32_t> BpeModel::token_to_id(std::string_view token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(std::int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size() || !tokens_[id]) return nullptr;
  return &*tokens_[id];
}

void BpeModel::initial_symbols(std::string_view word, std::vector<std::int32_t>& symbols) const {
  // tokenizers' BPE::merge_word, one character per byte. A run of unknown bytes becomes one unknown token
  // with fuse_unk; without unk_token unknown bytes are dropped.
  std::int32_t pending_unk = -1;  // an unknown token not yet emitted, which fuse_unk may extend
  for (const char c : word) {
    const ByteSymbol& symbol = byte_symbols_[static_cast<unsigned char>(c)];
    if (symbol.id >= 0) {
      if (pending_unk >= 0) symbols.push_back(pending_unk);
      pending_unk = -1;
      symbols.push_back(symbol.id);
    } else if (!symbol.fallback_ids.empty()) {
      symbols.insert(symbols.end(), symbol.fallback_ids.begin(), symbol.fallback_ids.end());
    } else if (unk_token_) {
      DSV3_CHECK(unk_id_.has_value(), "BPE: unk_token '{}' is not in the vocabulary", *unk_token_);
      if (pending_unk >= 0 && !fuse_unk_) symbols.push_back(pending_unk);
      pending_unk = *unk_id_;
    }
  }
  if (pending_unk >= 0) symbols.push_back(pending_unk);
}

void BpeModel::merge(std::vector<std::int32_t>& ids) const {
  if (ids.size() < 2) return;
  thread_local MergeScratch scratch;
  auto& symbols = scratch.symbols;
  auto& heap = scratch.heap;
  const auto n = static_cast<std::int32_t>(ids.size());
  symbols.resize(n);
  heap.clear();
  for (std::int32_t i = 0; i < n; ++i) {
    symbols[i] = {ids[i], i - 1, i + 1 < n ? i + 1 : -1};
    if (i + 1 < n) {
      if (const MergeTable::Merge* m = merges_.find(ids[i], ids[i + 1])) heap.push_back({m->rank, std::uint32_t(i), m->merged_id});
    }
  }
  std::make_heap(heap.begin(), heap.end());
  const auto push = [&](std::int32_t pos) {
    if (const MergeTable::Merge* m = merges_.find(symbols[pos].id, symbols[symbols[pos].next].id)) {
      heap.push_back({m->rank, std::uint32_t(pos), m->merged_id});
      std::push_heap(heap.begin(), heap.end());
    }
  };
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const MergeScratch::Candidate top = heap.back();
    heap.pop_back();
    auto& left = symbols[top.pos];
    if (left.id < 0 || left.next < 0) continue;
    auto& right = symbols[left.next];
    // A candidate is stale when either symbol has changed since it was queued; the pair's merged token
    // tells, because a position's pair only ever grows.
    const MergeTable::Merge* m = merges_.find(left.id, right.id);
    if (m == nullptr || m->merged_id != top.merged_id) continue;
    left.id = top.merged_id;
    right.id = -1;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = static_cast<std::int32_t>(top.pos);
    if (left.prev >= 0) push(left.prev);
    if (left.next >= 0) push(static_cast<std::int32_t>(top.pos));
  }
  ids.clear();
  for (std::int32_t i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
}

void BpeModel::encode_word(std::string_view word, std::vector<std::int32_t>& ids) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (const auto it = raw_vocab_.find(word); it != raw_vocab_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  thread_local WordCache cache;
  if (cache.owner != cache_owner_) {
    cache.spans.clear();
    cache.ids.clear();
    cache.owner = cache_owner_;
  }
  if (const auto hit = cache.spans.find(word); hit != cache.spans.end()) {
    const auto [offset, count] = hit->second;
    ids.insert(ids.end(), cache.ids.begin() + offset, cache.ids.begin() + offset + count);
    return;
  }
  thread_local std::vector<std::int32_t> symbols;
  symbols.clear();
  initial_symbols(word, symbols);
  merge(symbols);
  ids.insert(ids.end(), symbols.begin(), symbols.end());
  if (word.size() <= WordCache::kMaxWordBytes) {
    if (cache.spans.size() >= WordCache::kMaxEntries) {
      cache.spans.clear();
      cache.ids.clear();
    }
    cache.spans.emplace(word, std::pair{static_cast<std::uint32_t>(cache.ids.size()), static_cast<std::uint32_t>(symbols.size())});
    cache.ids.insert(cache.ids.end(), symbols.begin(), symbols.end());
  }
}

}  // namespace dsv3::data
