// Regular expressions with the meaning Hugging Face `tokenizers` gives them. `tokenizers` compiles
// pre-tokenizer patterns with Oniguruma (Ruby syntax); dsv3 runs them with PCRE2 (UTF, UCP, JIT) after
// rewriting what means something else to PCRE2 — the escapes \s \w \d \h and their negations, and
// \p{category} for characters newer than PCRE2's Unicode tables — and iterates matches with Oniguruma's rule
// for empty matches. Patterns that cannot be carried over exactly (e.g. \W inside a character class, nested
// classes) are refused rather than run with another meaning. Known remaining differences, for patterns that
// name these categories: U+1171E is both Mn and Mc here (Mc only in `tokenizers`), and \p{C} / \p{Cn} still
// match the code points PCRE2's tables do not know.
#pragma once

#include "dsv3/data/utf8.hpp"

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

struct pcre2_real_code_8;

namespace dsv3::data {

class Regex {
 public:
  // Compiles an Oniguruma-syntax pattern. An invalid or unsupported one is a dsv3::Error quoting the pattern
  // and saying what is wrong where.
  explicit Regex(std::string_view pattern);

  // A pattern that matches `literal` and nothing else.
  static std::string escape(std::string_view literal);

  struct Match {
    std::size_t begin;
    std::size_t end;
  };
  // The leftmost match in `subject` (valid UTF-8) that starts at or after byte `start`; anchors and
  // look-behind see the whole subject.
  std::optional<Match> find(std::string_view subject, std::size_t start) const;

  // Calls on_match(Match) for each match in `subject`, as Oniguruma's find_iter does: each search resumes
  // where the previous match ended, and an empty match right at the end of the previous match is skipped
  // by moving the search on one character.
  template <class OnMatch>
  void for_each_match(std::string_view subject, OnMatch&& on_match) const {
    std::size_t search_from = 0;
    std::optional<std::size_t> previous_end;
    while (search_from <= subject.size()) {
      const std::optional<Match> match = find(subject, search_from);
      if (!match) return;
      if (match->begin == match->end && previous_end == match->end) {
        search_from += search_from < subject.size() ? utf8::decode_at(subject, search_from).length : 1;
        continue;
      }
      search_from = previous_end.emplace(match->end);
      on_match(*match);
    }
  }

 private:
  std::string pattern_;  // as given, for error messages
  std::shared_ptr<pcre2_real_code_8> code_;  // immutable once compiled: shared by copies and threads
};

}  // namespace dsv3::data
