#include "dsv3/data/added_vocabulary.hpp"

#include "dsv3/data/utf8.hpp"

#include <algorithm>

namespace dsv3::data {

void AddedVocabulary::Matcher::build(const std::vector<std::pair<std::string, std::int32_t>>& patterns) {
  children_.assign(1, {});
  id_of_node_.assign(1, -1);
  starts_pattern_.fill(false);
  for (const auto& [text, id] : patterns) {
    std::int32_t node = 0;
    for (const char c : text) {
      const auto byte = static_cast<unsigned char>(c);
      const auto [child, inserted] = children_[node].try_emplace(byte, static_cast<std::int32_t>(children_.size()));
      if (inserted) {
        children_.emplace_back();
        id_of_node_.push_back(-1);
      }
      node = child->second;
    }
    if (id_of_node_[node] < 0) id_of_node_[node] = id;  // of equal patterns the first one counts
    starts_pattern_[static_cast<unsigned char>(text.front())] = true;
  }
}

std::optional<AddedVocabulary::Matcher::Found> AddedVocabulary::Matcher::find(std::string_view text,
                                                                             std::size_t from) const {
  for (std::size_t begin = from; begin < text.size(); ++begin) {
    if (!starts_pattern_[static_cast<unsigned char>(text[begin])]) continue;
    std::optional<Found> longest;
    std::int32_t node = 0;
    for (std::size_t i = begin; i < text.size(); ++i) {
      const auto child = children_[node].find(static_cast<unsigned char>(text[i]));
      if (child == children_[node].end()) break;
      node = child->second;
      if (id_of_node_[node] >= 0) longest = Found{begin, i + 1, id_of_node_[node]};
    }
    if (longest) return longest;
  }
  return std::nullopt;
}

AddedVocabulary::AddedVocabulary(const std::vector<AddedToken>& tokens, const BpeModel& model) {
  for (const AddedToken& token : tokens) add(token, model);
  std::vector<std::pair<std::string, std::int32_t>> raw_patterns, normalized_patterns;
  for (const auto* list : {&special_tokens_, &plain_tokens_}) {
    for (const AddedToken& token : *list) {
      (token.normalized ? normalized_patterns : raw_patterns).emplace_back(token.content, *id_of(token.content, model));
    }
  }
  raw_matcher_.build(raw_patterns);
  normalized_matcher_.build(normalized_patterns);
}

std::optional<std::int32_t> AddedVocabulary::id_of(std::string_view content, const BpeModel& model) const {
  if (const auto it = id_of_content_.find(std::string(content)); it != id_of_content_.end()) return it->second;
  return model.token_to_id(content);
}

void AddedVocabulary::add(const AddedToken& token, const BpeModel& model) {
  // tokenizers' AddedVocabulary::add_tokens for a single token.
  if (token.special && !token.content.empty() && special_contents_.insert(token.content).second) {
    special_tokens_.push_back(token);
  }
  if (token.content.empty()) return;
  if (std::any_of(token_of_id_.begin(), token_of_id_.end(), [&](const auto& entry) { return entry.second == token; })) {
    return;
  }
  std::int32_t id = 0;
  if (const auto existing = id_of(token.content, model)) {
    id = *existing;
  } else {
    const auto model_size = static_cast<std::int32_t>(model.entry_count());
    const std::int32_t highest = max_id();
    id = highest < 0 ? model_size : (highest >= model_size || model_size == 0) ? highest + 1 : model_size;
  }
  id_of_content_[token.content] = id;
  token_of_id_[id] = token;
  if (!special_contents_.contains(token.content)) plain_tokens_.push_back(token);
}

std::optional<std::int32_t> AddedVocabulary::token_to_id(std::string_view content) const {
  const auto it = id_of_content_.find(std::string(content));
  if (it == id_of_content_.end()) return std::nullopt;
  return it->second;
}

const AddedToken* AddedVocabulary::token(std::int32_t id) const {
  const auto it = token_of_id_.find(id);
  return it == token_of_id_.end() ? nullptr : &it->second;
}

std::int32_t AddedVocabulary::max_id() const {
  std::int32_t highest = -1;
  for (const auto& [content, id] : id_of_content_) highest = std::max(highest, id);
  return highest;
}

void AddedVocabulary::split(std::string_view text, const std::function<void(std::string_view)>& on_text,
                            const std::function<void(std::int32_t)>& on_token) const {
  split_with(raw_matcher_, text,
             [&](std::string_view piece) { split_with(normalized_matcher_, piece, on_text, on_token); }, on_token);
}

void AddedVocabulary::split_with(const Matcher& matcher, std::string_view text,
                                 const std::function<void(std::string_view)>& on_text,
                                 const std::function<void(std::int32_t)>& on_token) const {
  // tokenizers' AddedVocabulary::find_matches. The checks look only inside `text`: in the second pass that
  // is a piece between first-pass tokens, as in `tokenizers`.
  const auto char_before = [&](std::size_t pos) {
    const std::size_t length = utf8::decode_last(text.substr(0, pos)).length;
    return text.substr(pos - length, length);
  };
  const auto char_at = [&](std::size_t pos) { return text.substr(pos, utf8::decode_at(text, pos).length); };
  const auto is_word = [&](std::string_view one_char) { return word_char_.find(one_char, 0).has_value(); };
  const auto is_space = [&](std::string_view one_char) { return space_char_.find(one_char, 0).has_value(); };
  std::size_t text_start = 0;  // start of the text not yet handed out
  std::size_t search_from = 0;
  while (const auto found = matcher.find(text, search_from)) {
    search_from = found->end;
    std::size_t start = found->begin, stop = found->end;
    const AddedToken& token = token_of_id_.at(found->id);
    if (token.single_word) {
      const bool word_before = start > 0 && is_word(char_before(start));
      const bool word_after = stop < text.size() && is_word(char_at(stop));
      if (word_before || word_after) continue;
    }
    if (token.lstrip) {
      std::size_t new_start = start;
      while (new_start > 0 && is_space(char_before(new_start))) new_start -= char_before(new_start).size();
      start = std::max(new_start, text_start);  // spaces a previous token's rstrip took stay with it
    }
    if (token.rstrip) {
      while (stop < text.size() && is_space(char_at(stop))) stop += char_at(stop).size();
    }
    if (text_start < start) on_text(text.substr(text_start, start - text_start));
    on_token(found->id);
    text_start = stop;
  }
  if (text_start < text.size()) on_text(text.substr(text_start));
}

}  // namespace dsv3::data
