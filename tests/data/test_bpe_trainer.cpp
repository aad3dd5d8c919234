// BPE trainer: deterministic output, tie-breaking, special-token ids, and the check that matters — a
// tokenizer.json dsv3 trains is encoded by Hugging Face `tokenizers` exactly as by dsv3. The fixture
// dsv3_trained/ was trained by this code on corpus.txt and then encoded by `tokenizers`
// (validation/tokenizer_fixtures.py); here the same training runs again and must give the same file, whose
// encodings must match the ids `tokenizers` produced.
#include "dsv3/data/bpe_trainer.hpp"
#include "dsv3/data/tokenizer.hpp"
#include "tokenizer_fixtures.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

namespace {

using dsv3::data::BpeTrainer;
using dsv3::data::BpeTrainerOptions;
using dsv3::data::Tokenizer;
using nlohmann::json;
using namespace dsv3::testing::tokenizer;
namespace fs = std::filesystem;

std::vector<std::string> corpus_documents() {
  std::vector<std::string> documents;
  std::istringstream corpus(read_text(kFixtures / "corpus.txt"));
  for (std::string document; std::getline(corpus, document, '\0');) documents.push_back(document);
  return documents;
}

}  // namespace

TEST_CASE("a dsv3-trained tokenizer.json is encoded identically by tokenizers and dsv3") {
  BpeTrainerOptions options;
  options.vocab_size = 1024;  // as validation/tokenizer_fixtures.py trains dsv3_trained/
  BpeTrainer trainer(options);
  for (const std::string& document : corpus_documents()) trainer.add_document(document);
  const dsv3::data::BpeVocabulary vocabulary = trainer.train();
  CHECK(vocabulary.tokens.size() == 1024);
  const fs::path dir = scratch_dir("parity");
  trainer.save(vocabulary, dir);

  // Training is deterministic: the same corpus gives the committed file, byte for byte.
  CHECK(read_text(dir / "tokenizer.json") == read_text(kFixtures / "dsv3_trained" / "tokenizer.json"));
  CHECK(read_text(dir / "tokenizer_config.json") == read_text(kFixtures / "dsv3_trained" / "tokenizer_config.json"));

  const Tokenizer tokenizer = Tokenizer::from_file(dir / "tokenizer.json");
  CHECK(tokenizer.bos_id() == 0);
  CHECK(tokenizer.eos_id() == 1);
  CHECK(tokenizer.token_to_id(std::string(dsv3::data::kDeepSeekPadToken)) == 2);
  const json expected = json::parse(read_text(kFixtures / "expected.json"));
  const json& texts = expected.at("texts");
  const json& ids_from_tokenizers = expected.at("tokenizers").at("dsv3_trained").at("ids");
  for (std::size_t i = 0; i < texts.size(); ++i) {
    INFO("text ", i, ": ", texts[i].dump());
    CHECK(tokenizer.encode(texts[i].get<std::string>()) == ids_from_tokenizers[i].get<std::vector<std::int32_t>>());
  }
  fs::remove_all(dir);
}

TEST_CASE("merges: most frequent pair first, ties to the lowest (left id, right id) as in tokenizers") {
  BpeTrainerOptions options;
  options.special_tokens = {"<s>"};
  options.bos_token = options.eos_token = "<s>";
  options.min_frequency = 1;
  options.vocab_size = 1 + 256 + 4;
  BpeTrainer trainer(options);
  trainer.add_document("xy zw");
  trainer.add_document("ab ab");
  const dsv3::data::BpeVocabulary vocabulary = trainer.train();
  const auto merge = [&](std::size_t rank) {
    return vocabulary.tokens[vocabulary.merges[rank].first] + "+" + vocabulary.tokens[vocabulary.merges[rank].second];
  };
  REQUIRE(vocabulary.merges.size() == 4);
  // "ab" and "Ġab" occur once each, so (a, b) occurs twice; the rest once. Byte ids follow the characters'
  // order (w < x < y < z < Ġ), hence (x, y) before (z, w) before (Ġ, ...).
  CHECK(merge(0) == "a+b");
  CHECK(merge(1) == "x+y");
  CHECK(merge(2) == "z+w");
  CHECK(merge(3) == "Ġ+ab");
  CHECK(vocabulary.tokens[0] == "<s>");
}

TEST_CASE("word counts gathered in parts (as on several MPI ranks) train the same vocabulary") {
  const std::vector<std::string> documents = corpus_documents();
  BpeTrainerOptions options;
  options.vocab_size = 600;
  options.pre_tokenizer = dsv3::data::PreTokenizerKind::gpt2;
  BpeTrainer whole(options), part_a(options), part_b(options), merged(options);
  for (std::size_t i = 0; i < documents.size(); ++i) {
    whole.add_document(documents[i]);
    (i % 2 ? part_a : part_b).add_document(documents[i]);
  }
  for (const BpeTrainer* part : {&part_a, &part_b}) {
    for (const auto& [word, count] : part->word_counts()) merged.add_word(word, count);
  }
  const auto expected = whole.train();
  const auto actual = merged.train();
  CHECK(actual.tokens == expected.tokens);
  CHECK(actual.merges == expected.merges);

  // The GPT-2 preset writes a tokenizer dsv3 loads and that gives every text back.
  const fs::path dir = scratch_dir("gpt2");
  whole.save(expected, dir);
  const Tokenizer tokenizer = Tokenizer::from_file(dir / "tokenizer.json");
  for (const std::string& document : documents) CHECK(tokenizer.decode(tokenizer.encode(document)) == document);
  fs::remove_all(dir);
}

TEST_CASE("trainer errors") {
  BpeTrainerOptions small;
  small.vocab_size = 100;
  CHECK(error_of([&] { BpeTrainer trainer(small); }).find("vocab_size 100 is smaller than the 3 special tokens") !=
        std::string::npos);
  BpeTrainerOptions bad_bos;
  bad_bos.bos_token = "<bos>";
  CHECK(error_of([&] { BpeTrainer trainer(bad_bos); }).find("'<bos>' is not one of the special tokens") != std::string::npos);
  BpeTrainer trainer;
  CHECK(error_of([&] { trainer.add_document("ab\xFF"); }).find("invalid UTF-8 at byte offset 2") != std::string::npos);
}
