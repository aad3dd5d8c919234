// Training a byte-level BPE tokenizer. Documents are pre-tokenized (DeepSeek-V3's or GPT-2's rules) and the
// words counted; then the most frequent pair of adjacent tokens is merged into a new token, again and again,
// with pair counts updated only in the words that contain the merged pair. Ties go to the lowest
// (left id, right id), as in `tokenizers`' BpeTrainer. The result is written as a tokenizer.json (and a
// tokenizer_config.json naming BOS/EOS) that dsv3's Tokenizer and Hugging Face `tokenizers` both load and
// encode identically.
#pragma once

#include "dsv3/data/string_map.hpp"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsv3::data {

class PreTokenizer;

inline constexpr std::string_view kDeepSeekBosToken = "<｜begin▁of▁sentence｜>";
inline constexpr std::string_view kDeepSeekEosToken = "<｜end▁of▁sentence｜>";
inline constexpr std::string_view kDeepSeekPadToken = "<｜▁pad▁｜>";

enum class PreTokenizerKind {
  deepseek_v3,  // three Split steps (digit groups, CJK/kana runs, words), then ByteLevel without regex
  gpt2,         // ByteLevel with GPT-2's regex
};

struct BpeTrainerOptions {
  // All tokens: the special tokens, the 256 byte tokens and one per merge. Training stops earlier when no
  // pair occurs min_frequency times any more.
  std::int64_t vocab_size = 2048;
  // Ids 0, 1, … in this order, as `tokenizers`' BpeTrainer numbers the special tokens it is given.
  std::vector<std::string> special_tokens = {std::string(kDeepSeekBosToken), std::string(kDeepSeekEosToken),
                                             std::string(kDeepSeekPadToken)};
  // Written to tokenizer_config.json; each must be one of special_tokens, or empty for none.
  std::string bos_token = std::string(kDeepSeekBosToken);
  std::string eos_token = std::string(kDeepSeekEosToken);
  PreTokenizerKind pre_tokenizer = PreTokenizerKind::deepseek_v3;
  std::int64_t min_frequency = 2;
};

// What training learns.
struct BpeVocabulary {
  std::vector<std::string> tokens;  // by id, as tokenizer.json writes them: special tokens, then byte-level text
  std::vector<std::pair<std::int32_t, std::int32_t>> merges;  // by rank: the ids of the two tokens merged
};

class BpeTrainer {
 public:
  explicit BpeTrainer(BpeTrainerOptions options = {});
  BpeTrainer(BpeTrainer&&) noexcept;
  BpeTrainer& operator=(BpeTrainer&&) noexcept;
  ~BpeTrainer();

  // Counts the words of one document (UTF-8; invalid UTF-8 is an error naming the byte offset).
  void add_document(std::string_view text);
  // Adds `count` occurrences of one pre-tokenized word (raw bytes): for counts made elsewhere, e.g. on
  // other MPI ranks from word_counts().
  void add_word(std::string_view word, std::int64_t count);
  const StringMap<std::int64_t>& word_counts() const { return word_counts_; }

  BpeVocabulary train() const;
  // Writes tokenizer.json and tokenizer_config.json into `directory`, creating it if needed.
  void save(const BpeVocabulary& vocabulary, const std::filesystem::path& directory) const;

 private:
  BpeTrainerOptions options_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  StringMap<std::int64_t> word_counts_;
};

}  // namespace dsv3::data
