// Pre-tokenization: cutting text into the words that BPE then encodes one by one, as the `pre_tokenizer` of a
// Hugging Face tokenizer.json describes it. Supported: `Split` (regex or literal pattern, every behaviour,
// `invert`), `ByteLevel` (add_prefix_space, use_regex with GPT-2's pattern) and `Sequence` of these, where
// ByteLevel comes last (it is what makes the tokenizer byte-level). Words come out as raw bytes: the ByteLevel
// step's byte-to-character map is applied by the BPE model reading its vocabulary instead (see byte_level.hpp).
#pragma once

#include "dsv3/data/regex.hpp"

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3::data {

// What a Split step does with the pieces its pattern matches (tokenizers' SplitDelimiterBehavior).
enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

class PreTokenizer {
 public:
  using WordCallback = std::function<void(std::string_view word)>;

  // From the "pre_tokenizer" value of a tokenizer.json; errors name `source` (the file).
  static PreTokenizer from_json(const nlohmann::json& config, const std::string& source);
  // DeepSeek-V3's: Split \p{N}{1,3}, Split on CJK/kana runs, Split on its word pattern (all Isolated), then
  // ByteLevel without prefix space or regex.
  static PreTokenizer deepseek_v3();
  // GPT-2's: ByteLevel with its regex, without prefix space.
  static PreTokenizer gpt2();

  // The "pre_tokenizer" value this was built from (what a tokenizer.json written by dsv3 records).
  const nlohmann::json& to_json() const { return config_; }

  // Calls on_word for each word of `text` (valid UTF-8), in order; empty words are never produced.
  void split(std::string_view text, const WordCallback& on_word) const;

 private:
  struct SplitStep {
    Regex regex;
    SplitBehavior behavior;
    bool invert;
  };
  struct ByteLevelStep {
    bool add_prefix_space;
    bool use_regex;
  };

  PreTokenizer(nlohmann::json config, std::vector<SplitStep> splits, ByteLevelStep byte_level);
  void run_splits(std::size_t step, std::string_view piece, const WordCallback& on_word) const;
  void run_byte_level(std::string_view piece, const WordCallback& on_word) const;

  nlohmann::json config_;
  std::vector<SplitStep> splits_;  // applied in order, each to every piece the previous one produced
  ByteLevelStep byte_level_;
  Regex gpt2_regex_;  // ByteLevel's own pattern, used when byte_level_.use_regex
};

}  // namespace dsv3::data
