// Added and special tokens: strings matched in the raw text before pre-tokenization and given their own id,
// never split by BPE. Ids are assigned and text is cut exactly as `tokenizers`' AddedVocabulary does when it
// loads a tokenizer.json: tokens are added one at a time in file order (a content already in the vocabulary
// keeps that id, a new one takes the next free id), the leftmost-longest occurrence wins, and single_word,
// lstrip and rstrip follow Rust regex's Unicode \w and \s.
#pragma once

#include "dsv3/data/bpe.hpp"
#include "dsv3/data/regex.hpp"

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace dsv3::data {

struct AddedToken {
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
  bool operator==(const AddedToken&) const = default;
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  // Adds `tokens` in order, each with the id `tokenizers` would give it on top of `model`.
  AddedVocabulary(const std::vector<AddedToken>& tokens, const BpeModel& model);

  std::optional<std::int32_t> token_to_id(std::string_view content) const;
  const AddedToken* token(std::int32_t id) const;  // nullptr when `id` is not an added token
  bool is_special(std::string_view content) const { return special_contents_.contains(std::string(content)); }
  std::int32_t max_id() const;  // -1 when empty

  // Cuts `text` into added tokens (on_token) and the text between them (on_text, never empty): first the
  // tokens that match the raw text, then, in what remains, those marked `normalized` (dsv3 supports no
  // normalizer, so both passes see the same text; the order still decides overlaps).
  void split(std::string_view text, const std::function<void(std::string_view)>& on_text,
             const std::function<void(std::int32_t)>& on_token) const;

 private:
  // Leftmost-longest matching of many literal strings (tokenizers uses Aho-Corasick, MatchKind::LeftmostLongest).
  class Matcher {
   public:
    void build(const std::vector<std::pair<std::string, std::int32_t>>& patterns);
    struct Found {
      std::size_t begin, end;
      std::int32_t id;
    };
    std::optional<Found> find(std::string_view text, std::size_t from) const;

   private:
    std::vector<std::unordered_map<unsigned char, std::int32_t>> children_;  // trie node → byte → node
    std::vector<std::int32_t> id_of_node_;                                   // -1: no pattern ends here
    std::array<bool, 256> starts_pattern_{};
  };

  void add(const AddedToken& token, const BpeModel& model);
  std::optional<std::int32_t> id_of(std::string_view content, const BpeModel& model) const;
  void split_with(const Matcher& matcher, std::string_view text, const std::function<void(std::string_view)>& on_text,
                  const std::function<void(std::int32_t)>& on_token) const;

  std::unordered_map<std::string, std::int32_t> id_of_content_;
  std::unordered_map<std::int32_t, AddedToken> token_of_id_;
  // Matching order: special tokens, then the others, each in the order they were first added.
  std::vector<AddedToken> special_tokens_;
  std::vector<AddedToken> plain_tokens_;
  std::unordered_set<std::string> special_contents_;
  Matcher raw_matcher_;
  Matcher normalized_matcher_;
  // Rust regex's \w (Alphabetic, M, Nd, Pc, Join_Control), for single_word; \p{L} and \p{Nl}, part of
  // Alphabetic, bring in the letters newer than PCRE2's tables (see regex.hpp).
  Regex word_char_{R"([\p{Alphabetic}\p{L}\p{Nl}\p{M}\p{Nd}\p{Pc}\p{Join_Control}])"};
  Regex space_char_{R"(\p{White_Space})"};  // Rust regex's \s, for lstrip and rstrip
};

}  // namespace dsv3::data
