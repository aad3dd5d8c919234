#include "dsv3/data/tokenizer.hpp"

#include "dsv3/core/error.hpp"
#include "dsv3/data/added_vocabulary.hpp"
#include "dsv3/data/bpe.hpp"
#include "dsv3/data/byte_level.hpp"
#include "dsv3/data/json_fields.hpp"
#include "dsv3/data/pretokenizer.hpp"
#include "dsv3/data/utf8.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace dsv3::data {

using nlohmann::json;

namespace {

json read_json(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  DSV3_CHECK(file.good(), "{}: cannot open the file", path.string());
  std::ostringstream text;
  text << file.rdbuf();
  try {
    return json::parse(text.str());
  } catch (const json::parse_error& e) {
    fail("{}: not valid JSON: {}", path.string(), e.what());
  }
}

void check_no_normalizer(const json& root, const std::string& source) {
  const json* normalizer = json_fields::optional_member(root, "normalizer", source);
  if (normalizer == nullptr) return;
  const std::string context = source + ": normalizer";
  // DeepSeek-V3 writes an empty Sequence, which changes nothing.
  const bool empty_sequence = json_fields::string_member(*normalizer, "type", context) == "Sequence" &&
                              json_fields::member(*normalizer, "normalizers", context).empty();
  DSV3_CHECK(empty_sequence, "{} {} is not supported: dsv3 supports byte-level BPE without a normalizer", context,
             normalizer->dump());
}

void check_byte_level_decoder(const json& root, const std::string& source) {
  const json* decoder = json_fields::optional_member(root, "decoder", source);
  DSV3_CHECK(decoder != nullptr && json_fields::string_member(*decoder, "type", source + ": decoder") == "ByteLevel",
             "{}: decoder {} is not supported: a byte-level BPE tokenizer decodes with ByteLevel", source,
             decoder ? decoder->dump() : "null");
}

std::vector<AddedToken> parse_added_tokens(const json& root, const std::string& source) {
  std::vector<AddedToken> tokens;
  const json* list = json_fields::optional_member(root, "added_tokens", source);
  if (list == nullptr) return tokens;
  DSV3_CHECK(list->is_array(), "{}: added_tokens: expected an array, found {}", source, list->type_name());
  for (std::size_t i = 0; i < list->size(); ++i) {
    const json& entry = (*list)[i];
    const std::string context = fmt::format("{}: added_tokens[{}]", source, i);
    // The "id" is not read: `tokenizers` assigns ids itself when loading, and so does AddedVocabulary.
    tokens.push_back({json_fields::string_member(entry, "content", context),
                      json_fields::bool_member(entry, "single_word", false, context),
                      json_fields::bool_member(entry, "lstrip", false, context),
                      json_fields::bool_member(entry, "rstrip", false, context),
                      json_fields::bool_member(entry, "normalized", true, context),
                      json_fields::bool_member(entry, "special", false, context)});
  }
  return tokens;
}

// 64-bit FNV-1a: small, and the same on every platform and compiler.
std::string fnv1a64(std::string_view bytes) {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  for (const char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ull;
  }
  return fmt::format("fnv1a64:{:016x}", hash);
}

}  // namespace

struct Tokenizer::Impl {
  BpeModel model;
  PreTokenizer pre_tokenizer;
  AddedVocabulary added;
  // By id: the bytes the ByteLevel decoder turns the token into, and whether the id exists / is special.
  std::vector<std::string> decoded;
  enum class Kind : std::uint8_t { absent, normal, special };
  std::vector<Kind> kinds;
  std::optional<std::int32_t> bos_id, eos_id;
  std::string fingerprint;

  std::optional<std::int32_t> token_to_id(std::string_view token) const {
    if (auto id = added.token_to_id(token)) return id;
    return model.token_to_id(token);
  }

  // tokenizer_config.json's bos_token / eos_token: a string, {"content": ...}, or null.
  std::optional<std::int32_t> config_token(const json& config, const char* key, const std::string& source) const {
    const json* value = json_fields::optional_member(config, key, source);
    if (value == nullptr) return std::nullopt;
    std::string content;
    if (value->is_string()) {
      content = value->get<std::string>();
    } else if (value->is_object()) {
      content = json_fields::string_member(*value, "content", source + ": " + key);
    } else {
      fail("{}: {} must be a string or an object with 'content', found {}", source, key, value->dump());
    }
    const auto id = token_to_id(content);
    DSV3_CHECK(id.has_value(), "{}: {} '{}' is not a token of the tokenizer", source, key, content);
    return id;
  }
};

Tokenizer Tokenizer::from_file(const std::filesystem::path& tokenizer_json) {
  const std::string source = tokenizer_json.string();
  const json root = read_json(tokenizer_json);
  json_fields::require_object(root, source);
  check_no_normalizer(root, source);
  check_byte_level_decoder(root, source);
  BpeModel model = BpeModel::from_json(json_fields::member(root, "model", source), source);
  const json* pre_tokenizer_config = json_fields::optional_member(root, "pre_tokenizer", source);
  PreTokenizer pre_tokenizer = PreTokenizer::from_json(pre_tokenizer_config ? *pre_tokenizer_config : json(), source);
  AddedVocabulary added(parse_added_tokens(root, source), model);
  auto impl = std::make_unique<Impl>(Impl{std::move(model), std::move(pre_tokenizer), std::move(added), {}, {}, {}, {}, {}});

  const std::int32_t size = std::max(impl->model.max_id(), impl->added.max_id()) + 1;
  impl->decoded.resize(size);
  impl->kinds.assign(size, Impl::Kind::absent);
  for (std::int32_t id = 0; id < size; ++id) {
    const AddedToken* added_token = impl->added.token(id);
    const std::string* token = added_token ? &added_token->content : impl->model.id_to_token(id);
    if (token == nullptr) continue;
    // The ByteLevel decoder maps a token back to bytes only when every character of it is in the byte
    // alphabet; any other token (a special token, say) is kept as written.
    impl->decoded[id] = byte_level::decode(*token).value_or(*token);
    impl->kinds[id] = impl->added.is_special(*token) ? Impl::Kind::special : Impl::Kind::normal;
  }

  const std::filesystem::path config_path = tokenizer_json.parent_path() / "tokenizer_config.json";
  if (std::filesystem::exists(config_path)) {
    const json config = read_json(config_path);
    impl->bos_id = impl->config_token(config, "bos_token", config_path.string());
    impl->eos_id = impl->config_token(config, "eos_token", config_path.string());
  }

  json definition;
  for (const char* key : {"model", "added_tokens", "normalizer", "pre_tokenizer"}) {
    definition[key] = root.contains(key) ? root[key] : json();
  }
  impl->fingerprint = fnv1a64(definition.dump());  // objects dump with sorted keys: canonical
  return Tokenizer(std::move(impl));
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

std::vector<std::int32_t> Tokenizer::encode(std::string_view text) const {
  if (const auto offset = utf8::find_invalid(text)) fail("Tokenizer::encode: invalid UTF-8 at byte offset {}", *offset);
  std::vector<std::int32_t> ids;
  ids.reserve(text.size() / 3);
  const PreTokenizer::WordCallback on_word = [&](std::string_view word) { impl_->model.encode_word(word, ids); };
  impl_->added.split(
      text, [&](std::string_view piece) { impl_->pre_tokenizer.split(piece, on_word); },
      [&](std::int32_t id) { ids.push_back(id); });
  return ids;
}

std::string Tokenizer::decode(std::span<const std::int32_t> ids, bool skip_special_tokens) const {
  std::string bytes;
  for (const std::int32_t id : ids) {
    DSV3_CHECK(id >= 0 && id < vocab_size() && impl_->kinds[id] != Impl::Kind::absent,
               "Tokenizer::decode: id {} is not in the vocabulary", id);
    if (skip_special_tokens && impl_->kinds[id] == Impl::Kind::special) continue;
    bytes += impl_->decoded[id];
  }
  return utf8::repair_lossy(bytes);
}

std::int64_t Tokenizer::vocab_size() const { return static_cast<std::int64_t>(impl_->kinds.size()); }
std::optional<std::int32_t> Tokenizer::bos_id() const { return impl_->bos_id; }
std::optional<std::int32_t> Tokenizer::eos_id() const { return impl_->eos_id; }
std::optional<std::int32_t> Tokenizer::token_to_id(std::string_view token) const { return impl_->token_to_id(token); }
std::string Tokenizer::fingerprint() const { return impl_->fingerprint; }

}  // namespace dsv3::data
