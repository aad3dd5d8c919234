// Byte-level BPE tokenizer compatible with Hugging Face `tokenizers` (tokenizer.json of model type BPE with
// ByteLevel pre-tokenization, Split pre-tokenizers with their regexes, added and special tokens).
// encode() gives token for token what `tokenizers` gives for the same file and text.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3::data {

class Tokenizer {
 public:
  // Loads tokenizer.json; reads BOS/EOS from tokenizer_config.json beside it when present.
  // Unsupported or malformed files give a dsv3::Error naming the file and what is wrong.
  static Tokenizer from_file(const std::filesystem::path& tokenizer_json);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Token ids of `text` (UTF-8; invalid UTF-8 is an error naming the byte offset). Added/special tokens in
  // the text are matched as in `tokenizers`. No BOS/EOS is added: the data pipeline adds them per document.
  std::vector<std::int32_t> encode(std::string_view text) const;
  std::string decode(std::span<const std::int32_t> ids, bool skip_special_tokens = false) const;

  // max id + 1 over the vocabulary and the added tokens.
  std::int64_t vocab_size() const;
  std::optional<std::int32_t> bos_id() const;
  std::optional<std::int32_t> eos_id() const;
  std::optional<std::int32_t> token_to_id(std::string_view token) const;
  // A stable hash of the tokenizer's definition; token datasets record it so a run can refuse data made with
  // another tokenizer.
  std::string fingerprint() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv3::data
