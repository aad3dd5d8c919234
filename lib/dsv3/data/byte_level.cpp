#include "dsv3/data/byte_level.hpp"

#include "dsv3/data/utf8.hpp"

#include <array>

namespace dsv3::data::byte_level {
namespace {

// The 188 bytes that stand for themselves plus the 68 moved to U+0100..U+0143.
constexpr char32_t kAlphabetEnd = 0x100 + 68;

struct Alphabet {
  std::array<char32_t, 256> char_of_byte{};
  std::array<std::string, 256> utf8_of_byte;
  std::array<std::int16_t, kAlphabetEnd> byte_of_char{};  // -1: not in the alphabet

  Alphabet() {
    const auto stands_for_itself = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    byte_of_char.fill(-1);
    char32_t next_free = 0x100;
    for (int b = 0; b < 256; ++b) {
      char_of_byte[b] = stands_for_itself(b) ? static_cast<char32_t>(b) : next_free++;
      byte_of_char[char_of_byte[b]] = static_cast<std::int16_t>(b);
      utf8::append(utf8_of_byte[b], char_of_byte[b]);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet instance;
  return instance;
}

}  // namespace

char32_t byte_to_char(std::uint8_t byte) { return alphabet().char_of_byte[byte]; }

std::optional<std::uint8_t> char_to_byte(char32_t code_point) {
  if (code_point >= kAlphabetEnd || alphabet().byte_of_char[code_point] < 0) return std::nullopt;
  return static_cast<std::uint8_t>(alphabet().byte_of_char[code_point]);
}

std::string encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) out += alphabet().utf8_of_byte[static_cast<std::uint8_t>(c)];
  return out;
}

std::optional<std::string> decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t pos = 0; pos < text.size();) {
    const utf8::CodePoint cp = utf8::decode_at(text, pos);
    const std::optional<std::uint8_t> byte = char_to_byte(cp.value);
    if (!byte) return std::nullopt;
    out.push_back(static_cast<char>(*byte));
    pos += cp.length;
  }
  return out;
}

}  // namespace dsv3::data::byte_level
