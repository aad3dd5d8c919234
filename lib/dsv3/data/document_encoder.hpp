// The tokenizer as the data pipeline uses it: a document's text in, BOS + ids + EOS out (torchtitan's packing,
// REFERENCE.md §3), and the identity that token datasets record. Preprocessing and the loader take this rather
// than a Tokenizer so that they can be tested with a trivial encoding.
#pragma once

#include "dsv3/core/error.hpp"
#include "dsv3/data/tokenizer.hpp"
#include "dsv3/io/token_dataset.hpp"

#include <cstdint>
#include <functional>
#include <string_view>
#include <utility>
#include <vector>

namespace dsv3::data {

class DocumentEncoder {
 public:
  // Token ids of a document's text, without BOS and EOS.
  using Encode = std::function<std::vector<std::int32_t>(std::string_view text)>;

  DocumentEncoder(Encode encode, io::TokenizerIdentity identity)
      : encode_(std::move(encode)), identity_(std::move(identity)) {}

  // Encodes with `tokenizer`, which must outlive the encoder and have BOS and EOS tokens.
  static DocumentEncoder from_tokenizer(const Tokenizer& tokenizer) {
    DSV3_CHECK(tokenizer.bos_id() && tokenizer.eos_id(),
               "the tokenizer has no {} token; dsv3 packs each document as BOS, tokens, EOS",
               tokenizer.bos_id() ? "EOS" : "BOS");
    return DocumentEncoder([&tokenizer](std::string_view text) { return tokenizer.encode(text); },
                           {tokenizer.fingerprint(), tokenizer.vocab_size(), *tokenizer.bos_id(), *tokenizer.eos_id()});
  }

  // Appends BOS, the ids of `text` and EOS to `packed`; returns how many tokens that is.
  std::int64_t append(std::string_view text, std::vector<std::int32_t>& packed) const {
    const std::vector<std::int32_t> ids = encode_(text);
    packed.push_back(identity_.bos_id);
    packed.insert(packed.end(), ids.begin(), ids.end());
    packed.push_back(identity_.eos_id);
    return static_cast<std::int64_t>(ids.size()) + 2;
  }

  const io::TokenizerIdentity& identity() const { return identity_; }

 private:
  Encode encode_;
  io::TokenizerIdentity identity_;
};

}  // namespace dsv3::data
