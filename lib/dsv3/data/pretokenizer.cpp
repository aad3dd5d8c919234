#include "dsv3/data/pretokenizer.hpp"

#include "dsv3/core/error.hpp"
#include "dsv3/data/byte_level.hpp"
#include "dsv3/data/json_fields.hpp"

#include <fmt/format.h>

#include <optional>
#include <utility>

namespace dsv3::data {
namespace {

using nlohmann::json;

// DeepSeek-V3's tokenizer.json, pre_tokenizer (REFERENCE.md §5).
constexpr std::string_view kDeepSeekDigits = R"(\p{N}{1,3})";
constexpr std::string_view kDeepSeekCjk = "[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+";
constexpr std::string_view kDeepSeekWords =
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

json isolated_split(std::string_view regex) {
  return {{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}};
}

json byte_level_config(bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
}

}  // namespace

PreTokenizer::PreTokenizer(json config, std::vector<SplitStep> splits, ByteLevelStep byte_level)
    : config_(std::move(config)), splits_(std::move(splits)), byte_level_(byte_level),
      gpt2_regex_(byte_level::kGpt2Pattern) {}

PreTokenizer PreTokenizer::deepseek_v3() {
  return from_json({{"type", "Sequence"},
                    {"pretokenizers", {isolated_split(kDeepSeekDigits), isolated_split(kDeepSeekCjk),
                                       isolated_split(kDeepSeekWords), byte_level_config(false)}}},
                   "dsv3's deepseek_v3 pre-tokenizer");
}

PreTokenizer PreTokenizer::gpt2() { return from_json(byte_level_config(true), "dsv3's gpt2 pre-tokenizer"); }

PreTokenizer PreTokenizer::from_json(const json& config, const std::string& source) {
  std::vector<SplitStep> splits;
  std::optional<ByteLevelStep> last_step;
  // Sequences may nest; their steps run in document order, so they are flattened.
  const auto parse = [&](const auto& self, const json& step, const std::string& context) -> void {
    const std::string type = json_fields::string_member(step, "type", context);
    if (type == "Sequence") {
      const json& steps = json_fields::member(step, "pretokenizers", context);
      DSV3_CHECK(steps.is_array(), "{}.pretokenizers: expected an array", context);
      for (std::size_t i = 0; i < steps.size(); ++i) self(self, steps[i], fmt::format("{}.pretokenizers[{}]", context, i));
      return;
    }
    DSV3_CHECK(!last_step, "{}: a {} step after ByteLevel is not supported (ByteLevel must come last)",
               context, type);
    if (type == "ByteLevel") {
      last_step = ByteLevelStep{json_fields::bool_member(step, "add_prefix_space", true, context),
                                json_fields::bool_member(step, "use_regex", true, context)};
    } else if (type == "Split") {
      const json& pattern = json_fields::member(step, "pattern", context);
      std::string regex;
      if (const json* text = json_fields::optional_member(pattern, "String", context + ".pattern")) {
        DSV3_CHECK(text->is_string(), "{}.pattern.String: expected a string", context);
        regex = Regex::escape(text->get<std::string>());
      } else {
        regex = json_fields::string_member(pattern, "Regex", context + ".pattern");
      }
      const std::string behavior = json_fields::string_member(step, "behavior", context);
      SplitBehavior parsed;
      if (behavior == "Removed") parsed = SplitBehavior::removed;
      else if (behavior == "Isolated") parsed = SplitBehavior::isolated;
      else if (behavior == "MergedWithPrevious") parsed = SplitBehavior::merged_with_previous;
      else if (behavior == "MergedWithNext") parsed = SplitBehavior::merged_with_next;
      else if (behavior == "Contiguous") parsed = SplitBehavior::contiguous;
      else fail("{}.behavior: unknown split behaviour '{}'", context, behavior);
      const bool invert = json_fields::bool_member(step, "invert", false, context);
      try {
        splits.push_back({Regex(regex), parsed, invert});
      } catch (const Error& e) {
        fail("{}.pattern: {}", context, e.what());
      }
    } else {
      fail("{}: pre-tokenizer type '{}' is not supported (supported: Split, ByteLevel, Sequence)", context, type);
    }
  };
  const std::string context = source + ": pre_tokenizer";
  DSV3_CHECK(!config.is_null(), "{} is null; dsv3 supports byte-level BPE, whose pre_tokenizer has a ByteLevel step",
             context);
  parse(parse, config, context);
  DSV3_CHECK(last_step.has_value(),
             "{} has no ByteLevel step; dsv3 supports byte-level BPE tokenizers only", context);
  return PreTokenizer(config, std::move(splits), *last_step);
}

namespace {

// Cuts `piece` with `regex` into spans, alternately matched and not, and hands emit(begin, end) the pieces
// that `behavior` makes of them — tokenizers' NormalizedString::split, streamed: only the last output piece
// can still grow, so it is held back in `pending` until the next span decides.
template <class Emit>
void split_piece(const Regex& regex, SplitBehavior behavior, bool invert, std::string_view piece, Emit&& emit) {
  struct Span {
    std::size_t begin, end;
    bool is_match;
  };
  std::optional<Span> pending;
  bool previous_match = false;
  const auto flush = [&] {
    if (pending && pending->end > pending->begin) emit(pending->begin, pending->end);
    pending.reset();
  };
  const auto take = [&](Span span) {
    span.is_match = span.is_match != invert;
    switch (behavior) {
      case SplitBehavior::isolated:
        if (span.end > span.begin) emit(span.begin, span.end);
        break;
      case SplitBehavior::removed:
        if (!span.is_match && span.end > span.begin) emit(span.begin, span.end);
        break;
      case SplitBehavior::contiguous:
        if (pending && span.is_match == previous_match) {
          pending->end = span.end;
        } else {
          flush();
          pending = span;
        }
        break;
      case SplitBehavior::merged_with_previous:
        if (pending && span.is_match && !previous_match) {
          pending->end = span.end;
        } else {
          flush();
          pending = span;
        }
        break;
      case SplitBehavior::merged_with_next:
        // A match joins the span after it when that one is not a match.
        if (pending && pending->is_match && !span.is_match) {
          span.begin = pending->begin;
          pending.reset();
        }
        flush();
        if (span.is_match) {
          pending = span;
        } else if (span.end > span.begin) {
          emit(span.begin, span.end);
        }
        break;
    }
    previous_match = span.is_match;
  };
  std::size_t previous_end = 0;
  regex.for_each_match(piece, [&](Regex::Match match) {
    if (match.begin != previous_end) take({previous_end, match.begin, false});
    take({match.begin, match.end, true});
    previous_end = match.end;
  });
  if (previous_end != piece.size()) take({previous_end, piece.size(), false});
  flush();
}

}  // namespace

void PreTokenizer::split(std::string_view text, const WordCallback& on_word) const {
  if (!text.empty()) run_splits(0, text, on_word);
}

void PreTokenizer::run_splits(std::size_t step, std::string_view piece, const WordCallback& on_word) const {
  if (step == splits_.size()) {
    run_byte_level(piece, on_word);
    return;
  }
  const SplitStep& split = splits_[step];
  split_piece(split.regex, split.behavior, split.invert, piece, [&](std::size_t begin, std::size_t end) {
    run_splits(step + 1, piece.substr(begin, end - begin), on_word);
  });
}

void PreTokenizer::run_byte_level(std::string_view piece, const WordCallback& on_word) const {
  std::string prefixed;
  if (byte_level_.add_prefix_space && piece.front() != ' ') {
    prefixed.reserve(piece.size() + 1);
    prefixed.push_back(' ');
    prefixed.append(piece);
    piece = prefixed;
  }
  if (!byte_level_.use_regex) {
    on_word(piece);
    return;
  }
  split_piece(gpt2_regex_, SplitBehavior::isolated, false, piece,
              [&](std::size_t begin, std::size_t end) { on_word(piece.substr(begin, end - begin)); });
}

}  // namespace dsv3::data
