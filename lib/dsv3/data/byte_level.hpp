// GPT-2's byte-level alphabet: each of the 256 byte values is written as one printable code point, so that a
// BPE vocabulary over bytes can be stored as text (tokenizer.json) — the space byte is 'Ġ' (U+0120), the
// newline 'Ċ' (U+010A). Printable Latin-1 bytes stand for themselves; the other 68 take U+0100 onwards, in
// byte order. dsv3's BPE runs on raw bytes and uses this map only to read and write vocabularies.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dsv3::data::byte_level {

char32_t byte_to_char(std::uint8_t byte);
// The byte that `code_point` stands for, or nullopt when it is outside the 256-character alphabet.
std::optional<std::uint8_t> char_to_byte(char32_t code_point);

// Each byte of `bytes` as its alphabet character, UTF-8 encoded.
std::string encode(std::string_view bytes);
// The bytes that valid UTF-8 `text` stands for, or nullopt when a character of it is outside the alphabet.
std::optional<std::string> decode(std::string_view text);

// The regex the ByteLevel pre-tokenizer splits with when use_regex is set (GPT-2's).
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

}  // namespace dsv3::data::byte_level
