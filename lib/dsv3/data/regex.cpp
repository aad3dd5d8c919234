#include "dsv3/data/regex.hpp"

#include "dsv3/core/error.hpp"
#include "dsv3/data/unicode_categories.hpp"

#include <fmt/format.h>

#include <cstdint>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace dsv3::data {
namespace {

// Oniguruma's Unicode classes differ from PCRE2's (with UCP) in two ways. The escapes: Oniguruma's \s is
// U+0009–U+000D, U+0085 and Z (PCRE2's adds U+180E), its \w is L, M, N and Pc (PCRE2's: L, N and '_'), its
// \d is Nd, its \h a hex digit (PCRE2's: horizontal space). And the data: Oniguruma in `tokenizers` knows
// Unicode 16, PCRE2 10.42 Unicode 14, so each \p{category} gets the code points assigned to it since
// (unicode_categories.hpp). Everything is written as character-class items, which mean the same inside a
// positive or a negated class; only negated escapes inside a class can need an item PCRE2 lacks.

// The class items for general category `name` (one or two letters) as `tokenizers` sees it.
std::string category_items(std::string_view name) {
  std::string items = fmt::format("\\p{{{}}}", name);
  for (const unicode::CategoryRange& range : unicode::categories_newer_than_pcre2()) {
    if (std::string_view(range.category).starts_with(name)) {
      items += fmt::format("\\x{{{:X}}}-\\x{{{:X}}}", static_cast<std::uint32_t>(range.first),
                           static_cast<std::uint32_t>(range.last));
    }
  }
  return items;
}

bool is_general_category(std::string_view name) {
  return (name.size() == 1 || name.size() == 2) && std::string_view("LMNPSZC").find(name[0]) != std::string_view::npos;
}

[[noreturn]] void refuse(std::string_view pattern, std::size_t offset, std::string_view what) {
  fail("regex '{}': {} at offset {} has no exact PCRE2 equivalent", pattern, what, offset);
}

// Rewrites an Oniguruma pattern into a PCRE2 pattern of the same meaning (see above).
std::string to_pcre2(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 64);
  bool in_class = false;
  std::size_t class_body_start = 0;  // where a leading ']' is still a literal
  // Writes a set given as class items: as is inside a class, wrapped in [...] or [^...] outside. A negated
  // set inside a class has no item form; `negated_in_class` is PCRE2's own item when it means the same.
  const auto write_set = [&](std::size_t offset, const std::string& items, bool negated,
                             std::string_view negated_in_class) {
    if (!in_class) {
      out += negated ? "[^" : "[";
      out += items;
      out += ']';
    } else if (!negated) {
      out += items;
    } else if (!negated_in_class.empty()) {
      out += negated_in_class;
    } else {
      refuse(pattern, offset, fmt::format("'{}' inside a character class", pattern.substr(offset, 2)));
    }
  };
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const std::size_t offset = i;
      const char escaped = pattern[++i];
      switch (escaped) {
        case 's': case 'S': {
          const std::string items = "\\t-\\r\\x{85}" + category_items("Z");
          // PCRE2's \S lacks only U+180E, which is not a space for Oniguruma: adding it back is exact.
          write_set(offset, items, escaped == 'S', "\\S\\x{180E}");
          break;
        }
        case 'w': case 'W':
          write_set(offset, category_items("L") + category_items("M") + category_items("N") + category_items("Pc"),
                    escaped == 'W', "");
          break;
        case 'd': case 'D':
          write_set(offset, category_items("Nd"), escaped == 'D', "");
          break;
        case 'h': case 'H':
          write_set(offset, "0-9A-Fa-f", escaped == 'H', "");
          break;
        case 'p': case 'P': {
          // \pL, \p{L}, \p{^L}, \PL, \P{L}: general categories get the newer code points; other
          // properties (scripts, binary properties) are passed through.
          std::string_view name;
          std::size_t end = i + 1;
          if (end < pattern.size() && pattern[end] == '{') {
            const std::size_t close = pattern.find('}', end);
            if (close == std::string_view::npos) refuse(pattern, offset, "an unterminated \\p{");
            name = pattern.substr(end + 1, close - end - 1);
            end = close + 1;
          } else {
            name = pattern.substr(end, 1);
            end += 1;
          }
          bool negated = escaped == 'P';
          if (name.starts_with('^')) {
            negated = !negated;
            name.remove_prefix(1);
          }
          const std::string original(pattern.substr(offset, end - offset));
          if (!is_general_category(name) || category_items(name) == fmt::format("\\p{{{}}}", name)) {
            out += original;  // nothing newer: PCRE2's own class is exact
          } else {
            write_set(offset, category_items(name), negated, "");
          }
          i = end - 1;
          break;
        }
        default:
          out += c;
          out += escaped;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      class_body_start = i + 1 + (i + 1 < pattern.size() && pattern[i + 1] == '^');
    } else if (in_class && c == ']' && i != class_body_start) {
      in_class = false;
    } else if (in_class && c == '[') {
      if (i + 1 < pattern.size() && pattern[i + 1] == ':') {  // POSIX class [:alpha:]: copy it whole
        const std::size_t close = pattern.find(":]", i + 2);
        if (close != std::string_view::npos) {
          out += pattern.substr(i, close + 2 - i);
          i = close + 1;
          continue;
        }
      }
      refuse(pattern, i, "a nested character class");
    }
    out += c;
  }
  return out;
}

// Per-thread match state: PCRE2 match data and JIT stacks must not be shared between threads.
struct MatchScratch {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  // Grows on demand; long runs of one class (whitespace, CJK) need more than the 32 KiB default.
  pcre2_jit_stack* jit_stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, nullptr);

  MatchScratch() { pcre2_jit_stack_assign(context, nullptr, jit_stack); }
  ~MatchScratch() {
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;
};

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof buffer);
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

Regex::Regex(std::string_view pattern) : pattern_(pattern) {
  const std::string translated = to_pcre2(pattern);
  pcre2_compile_context* context = pcre2_compile_context_create(nullptr);
  pcre2_set_newline(context, PCRE2_NEWLINE_LF);
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  // MULTILINE: in Oniguruma's Ruby syntax ^ and $ match at line starts and ends.
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &error, &error_offset, context);
  pcre2_compile_context_free(context);
  DSV3_CHECK(code != nullptr, "regex '{}' does not compile: {} (at offset {} of its PCRE2 form '{}')", pattern,
             pcre2_message(error), error_offset, translated);
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // without JIT support PCRE2 interprets: slower, same result
  code_.reset(code, pcre2_code_free);
}

std::string Regex::escape(std::string_view literal) {
  std::string out;
  for (const char c : literal) {
    if (std::string_view(R"(\^$.|?*+()[]{}-/#&~ )").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

std::optional<Regex::Match> Regex::find(std::string_view subject, std::size_t start) const {
  thread_local MatchScratch scratch;
  const auto* data = reinterpret_cast<PCRE2_SPTR>(subject.empty() ? "" : subject.data());
  const int rc = pcre2_match(code_.get(), data, subject.size(), start, PCRE2_NO_UTF_CHECK, scratch.data,
                             scratch.context);
  if (rc == PCRE2_ERROR_NOMATCH) return std::nullopt;
  DSV3_CHECK(rc >= 0, "regex '{}' failed on a text of {} bytes: {}", pattern_, subject.size(), pcre2_message(rc));
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(scratch.data);
  return Match{ovector[0], ovector[1]};
}

}  // namespace dsv3::data
