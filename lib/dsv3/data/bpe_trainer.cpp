#include "dsv3/data/bpe_trainer.hpp"

#include "dsv3/core/error.hpp"
#include "dsv3/data/byte_level.hpp"
#include "dsv3/data/pretokenizer.hpp"
#include "dsv3/data/utf8.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <queue>
#include <unordered_map>

namespace dsv3::data {
namespace {

using Pair = std::uint64_t;  // (left id << 32) | right id
Pair make_pair_key(std::int32_t left, std::int32_t right) {
  return (Pair(std::uint32_t(left)) << 32) | std::uint32_t(right);
}
std::int32_t left_of(Pair pair) { return static_cast<std::int32_t>(pair >> 32); }
std::int32_t right_of(Pair pair) { return static_cast<std::int32_t>(pair & 0xFFFFFFFFu); }

// A pair and the count it had when queued. The queue's top is the most frequent pair, the lowest
// (left, right) on ties; an entry whose count is out of date is requeued with the current count when popped.
struct QueuedPair {
  std::int64_t count;
  Pair pair;
  bool operator<(const QueuedPair& other) const {
    return count != other.count ? count < other.count : pair > other.pair;
  }
};

// The distinct words of the corpus as token sequences, with how often each occurs, and the count of every
// adjacent pair over all of them.
struct Corpus {
  std::vector<std::vector<std::int32_t>> words;
  std::vector<std::int64_t> counts;
  std::unordered_map<Pair, std::int64_t> pair_counts;
  std::unordered_map<Pair, std::vector<std::uint32_t>> words_with_pair;  // may list a word twice, or stale

  // Adds (sign +1) or removes (sign -1) the pairs of `word` to or from the counts. Added pairs list the word
  // when they contain `new_token` (any pair, when it is -1): the word was listed under the others before.
  void count_pairs(std::uint32_t word, std::int64_t sign, std::int32_t new_token = -1) {
    const auto& tokens = words[word];
    for (std::size_t i = 0; i + 1 < tokens.size(); ++i) {
      const Pair pair = make_pair_key(tokens[i], tokens[i + 1]);
      pair_counts[pair] += sign * counts[word];
      if (sign > 0 && (new_token < 0 || tokens[i] == new_token || tokens[i + 1] == new_token)) {
        words_with_pair[pair].push_back(word);
      }
    }
  }
};

// Replaces every occurrence of (left, right) in `tokens`, scanning left to right, by `merged`.
bool merge_in_word(std::vector<std::int32_t>& tokens, std::int32_t left, std::int32_t right, std::int32_t merged) {
  std::size_t out = 0;
  bool changed = false;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (i + 1 < tokens.size() && tokens[i] == left && tokens[i + 1] == right) {
      tokens[out++] = merged;
      ++i;
      changed = true;
    } else {
      tokens[out++] = tokens[i];
    }
  }
  tokens.resize(out);
  return changed;
}

void write_file(const std::filesystem::path& path, const std::string& contents) {
  // Written beside and renamed into place, so a reader never sees half a file.
  const std::filesystem::path partial = path.string() + ".partial";
  {
    std::ofstream file(partial, std::ios::binary | std::ios::trunc);
    DSV3_CHECK(file.good(), "{}: cannot open for writing", partial.string());
    file << contents;
    file.close();
    DSV3_CHECK(file.good(), "{}: write failed", partial.string());
  }
  std::filesystem::rename(partial, path);
}

}  // namespace

BpeTrainer::BpeTrainer(BpeTrainerOptions options) : options_(std::move(options)) {
  const auto& specials = options_.special_tokens;
  for (std::size_t i = 0; i < specials.size(); ++i) {
    DSV3_CHECK(!specials[i].empty(), "BpeTrainer: special token {} is empty", i);
    DSV3_CHECK(!utf8::find_invalid(specials[i]), "BpeTrainer: special token {} is not valid UTF-8", i);
    DSV3_CHECK(std::count(specials.begin(), specials.end(), specials[i]) == 1,
               "BpeTrainer: special token '{}' is given twice", specials[i]);
    DSV3_CHECK(!byte_level::decode(specials[i]).has_value() || byte_level::decode(specials[i])->size() != 1,
               "BpeTrainer: special token '{}' is also a byte token", specials[i]);
  }
  for (const std::string* token : {&options_.bos_token, &options_.eos_token}) {
    DSV3_CHECK(token->empty() || std::find(specials.begin(), specials.end(), *token) != specials.end(),
               "BpeTrainer: BOS/EOS token '{}' is not one of the special tokens", *token);
  }
  const std::int64_t base = static_cast<std::int64_t>(specials.size()) + 256;
  DSV3_CHECK(options_.vocab_size >= base,
             "BpeTrainer: vocab_size {} is smaller than the {} special tokens plus the 256 byte tokens",
             options_.vocab_size, specials.size());
  pre_tokenizer_ = std::make_unique<PreTokenizer>(options_.pre_tokenizer == PreTokenizerKind::gpt2
                                                      ? PreTokenizer::gpt2()
                                                      : PreTokenizer::deepseek_v3());
}

BpeTrainer::BpeTrainer(BpeTrainer&&) noexcept = default;
BpeTrainer& BpeTrainer::operator=(BpeTrainer&&) noexcept = default;
BpeTrainer::~BpeTrainer() = default;

void BpeTrainer::add_document(std::string_view text) {
  if (const auto offset = utf8::find_invalid(text)) fail("BpeTrainer: invalid UTF-8 at byte offset {}", *offset);
  pre_tokenizer_->split(text, [&](std::string_view word) { add_word(word, 1); });
}

void BpeTrainer::add_word(std::string_view word, std::int64_t count) {
  if (word.empty() || count == 0) return;
  if (const auto it = word_counts_.find(word); it != word_counts_.end()) {
    it->second += count;
  } else {
    word_counts_.emplace(word, count);
  }
}

BpeVocabulary BpeTrainer::train() const {
  BpeVocabulary vocabulary;
  auto& tokens = vocabulary.tokens;
  StringMap<std::int32_t> id_of_token;
  const auto add_token = [&](std::string token) {
    const auto id = static_cast<std::int32_t>(tokens.size());
    id_of_token.emplace(token, id);
    tokens.push_back(std::move(token));
    return id;
  };
  for (const std::string& special : options_.special_tokens) add_token(special);
  // The byte alphabet, ordered by character as `tokenizers` orders its initial alphabet.
  std::vector<int> bytes(256);
  for (int b = 0; b < 256; ++b) bytes[b] = b;
  std::sort(bytes.begin(), bytes.end(), [](int a, int b) {
    return byte_level::byte_to_char(static_cast<std::uint8_t>(a)) < byte_level::byte_to_char(static_cast<std::uint8_t>(b));
  });
  std::array<std::int32_t, 256> id_of_byte{};
  for (const int b : bytes) id_of_byte[b] = add_token(byte_level::encode(std::string(1, static_cast<char>(b))));

  Corpus corpus;
  // Sorted words make the corpus, and so the training, independent of hash-map order.
  std::vector<std::pair<std::string_view, std::int64_t>> sorted_words(word_counts_.begin(), word_counts_.end());
  std::sort(sorted_words.begin(), sorted_words.end());
  for (const auto& [word, count] : sorted_words) {
    if (word.size() < 2) continue;  // no pair to merge
    auto& word_tokens = corpus.words.emplace_back();
    for (const char c : word) word_tokens.push_back(id_of_byte[static_cast<unsigned char>(c)]);
    corpus.counts.push_back(count);
  }
  for (std::uint32_t w = 0; w < corpus.words.size(); ++w) corpus.count_pairs(w, +1);

  std::priority_queue<QueuedPair> queue;
  for (const auto& [pair, count] : corpus.pair_counts) queue.push({count, pair});
  std::vector<std::int64_t> visited_in_merge(corpus.words.size(), -1);
  const std::int64_t min_count = std::max<std::int64_t>(1, options_.min_frequency);
  while (static_cast<std::int64_t>(tokens.size()) < options_.vocab_size && !queue.empty()) {
    const QueuedPair top = queue.top();
    queue.pop();
    const std::int64_t current = corpus.pair_counts[top.pair];
    if (current != top.count) {
      if (current > 0) queue.push({current, top.pair});
      continue;
    }
    if (top.count < min_count) break;

    const std::int32_t left = left_of(top.pair), right = right_of(top.pair);
    std::string merged_token = tokens[left] + tokens[right];
    // Two different pairs can spell the same token; it keeps the id it got first.
    const auto existing = id_of_token.find(merged_token);
    const std::int32_t merged = existing != id_of_token.end() ? existing->second : add_token(std::move(merged_token));
    const auto merge_rank = static_cast<std::int64_t>(vocabulary.merges.size());
    vocabulary.merges.emplace_back(left, right);

    std::vector<std::uint32_t> affected = std::move(corpus.words_with_pair[top.pair]);
    corpus.words_with_pair.erase(top.pair);
    for (const std::uint32_t w : affected) {
      if (visited_in_merge[w] == merge_rank) continue;
      visited_in_merge[w] = merge_rank;
      std::vector<std::int32_t> updated = corpus.words[w];
      if (!merge_in_word(updated, left, right, merged)) continue;  // a stale entry
      corpus.count_pairs(w, -1);
      corpus.words[w] = std::move(updated);
      corpus.count_pairs(w, +1, merged);
    }
    // Only pairs with the new token gained occurrences; they are queued with their counts now. Pairs that
    // lost occurrences are corrected when they reach the top.
    std::vector<Pair> gained;
    for (const std::uint32_t w : affected) {
      const auto& word_tokens = corpus.words[w];
      for (std::size_t i = 0; i + 1 < word_tokens.size(); ++i) {
        if (word_tokens[i] == merged || word_tokens[i + 1] == merged) gained.push_back(make_pair_key(word_tokens[i], word_tokens[i + 1]));
      }
    }
    std::sort(gained.begin(), gained.end());
    gained.erase(std::unique(gained.begin(), gained.end()), gained.end());
    for (const Pair pair : gained) queue.push({corpus.pair_counts[pair], pair});
  }
  return vocabulary;
}

void BpeTrainer::save(const BpeVocabulary& vocabulary, const std::filesystem::path& directory) const {
  using nlohmann::ordered_json;
  std::filesystem::create_directories(directory);

  ordered_json added_tokens = ordered_json::array();
  for (const std::string& special : options_.special_tokens) {
    const auto id = std::find(vocabulary.tokens.begin(), vocabulary.tokens.end(), special) - vocabulary.tokens.begin();
    DSV3_CHECK(id < static_cast<std::ptrdiff_t>(vocabulary.tokens.size()),
               "BpeTrainer::save: special token '{}' is not in the vocabulary", special);
    added_tokens.push_back({{"id", id}, {"content", special}, {"single_word", false}, {"lstrip", false},
                            {"rstrip", false}, {"normalized", false}, {"special", true}});
  }
  ordered_json vocab = ordered_json::object();
  for (std::size_t id = 0; id < vocabulary.tokens.size(); ++id) vocab[vocabulary.tokens[id]] = id;
  ordered_json merges = ordered_json::array();
  for (const auto& [left, right] : vocabulary.merges) merges.push_back({vocabulary.tokens.at(left), vocabulary.tokens.at(right)});

  ordered_json root;
  root["version"] = "1.0";
  root["truncation"] = nullptr;
  root["padding"] = nullptr;
  root["added_tokens"] = std::move(added_tokens);
  root["normalizer"] = nullptr;
  root["pre_tokenizer"] = ordered_json::parse(pre_tokenizer_->to_json().dump());
  root["post_processor"] = nullptr;
  root["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  root["model"] = {{"type", "BPE"},
                   {"dropout", nullptr},
                   {"unk_token", nullptr},
                   {"continuing_subword_prefix", nullptr},
                   {"end_of_word_suffix", nullptr},
                   {"fuse_unk", false},
                   {"byte_fallback", false},
                   {"ignore_merges", false},
                   {"vocab", std::move(vocab)},
                   {"merges", std::move(merges)}};
  write_file(directory / "tokenizer.json", root.dump(2, ' ', false) + "\n");

  const auto token_or_null = [](const std::string& token) { return token.empty() ? ordered_json() : ordered_json(token); };
  const ordered_json config = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                               {"bos_token", token_or_null(options_.bos_token)},
                               {"eos_token", token_or_null(options_.eos_token)},
                               {"add_bos_token", !options_.bos_token.empty()},
                               {"add_eos_token", false},
                               {"clean_up_tokenization_spaces", false}};
  write_file(directory / "tokenizer_config.json", config.dump(2, ' ', false) + "\n");
}

}  // namespace dsv3::data
