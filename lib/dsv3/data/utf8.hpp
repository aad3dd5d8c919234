// UTF-8 as the tokenizer needs it: validation that reports where the text goes wrong, the lossy repair that
// Hugging Face's ByteLevel decoder applies (Rust's String::from_utf8_lossy), and code point reading/writing.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace dsv3::data::utf8 {

// Byte offset of the first byte that does not start a well-formed UTF-8 sequence (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF), or nullopt when `text` is valid.
std::optional<std::size_t> find_invalid(std::string_view text);

// `bytes` with every maximal ill-formed subsequence replaced by one U+FFFD, byte for byte what Rust's
// String::from_utf8_lossy returns (Unicode's "substitution of maximal subparts").
std::string repair_lossy(std::string_view bytes);

// The code point starting at `pos` of valid UTF-8 `text`, and its length in bytes.
struct CodePoint {
  char32_t value;
  std::size_t length;
};
CodePoint decode_at(std::string_view text, std::size_t pos);
// The last code point of valid, non-empty UTF-8 `text`.
CodePoint decode_last(std::string_view text);

void append(std::string& out, char32_t code_point);

}  // namespace dsv3::data::utf8
