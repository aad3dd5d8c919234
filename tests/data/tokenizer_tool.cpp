// dsv3_tokenizer_tool: the command-line side of the tokenizer checks in validation/, which compare dsv3
// with Hugging Face `tokenizers` on the same files.
//   encode TOKENIZER_JSON TEXTS_JSON        TEXTS_JSON is a JSON array of strings; prints a JSON array of
//                                           {"ids": encode(text), "decoded": decode(ids)}
//   bench TOKENIZER_JSON CORPUS [REPEATS]   CORPUS holds documents separated by NUL bytes; encodes them all
//                                           on one thread REPEATS times (default 3) and prints the best
//                                           run as JSON: bytes, tokens, seconds, MB/s, tokens/s
//   train OUT_DIR VOCAB_SIZE deepseek_v3|gpt2 CORPUS
//                                           trains dsv3's BPE on CORPUS (NUL-separated documents) and writes
//                                           OUT_DIR/tokenizer.json and tokenizer_config.json
#include "dsv3/core/error.hpp"
#include "dsv3/data/bpe_trainer.hpp"
#include "dsv3/data/tokenizer.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

using dsv3::data::Tokenizer;

std::string read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  DSV3_CHECK(file.good(), "{}: cannot open", path);
  std::ostringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

std::vector<std::string_view> split_documents(std::string_view corpus) {
  std::vector<std::string_view> documents;
  for (std::size_t start = 0; start < corpus.size();) {
    std::size_t end = corpus.find('\0', start);
    if (end == std::string_view::npos) end = corpus.size();
    if (end > start) documents.push_back(corpus.substr(start, end - start));
    start = end + 1;
  }
  return documents;
}

int encode(const std::string& tokenizer_path, const std::string& texts_path) {
  const Tokenizer tokenizer = Tokenizer::from_file(tokenizer_path);
  const nlohmann::json texts = nlohmann::json::parse(read_file(texts_path));
  nlohmann::json out = nlohmann::json::array();
  for (const auto& text : texts) {
    const std::vector<std::int32_t> ids = tokenizer.encode(text.get_ref<const std::string&>());
    out.push_back({{"ids", ids}, {"decoded", tokenizer.decode(ids)}});
  }
  std::cout << out.dump() << "\n";
  return 0;
}

int bench(const std::string& tokenizer_path, const std::string& corpus_path, int repeats) {
  const Tokenizer tokenizer = Tokenizer::from_file(tokenizer_path);
  const std::string corpus = read_file(corpus_path);
  const std::vector<std::string_view> documents = split_documents(corpus);
  double best_seconds = 1e300;
  std::size_t bytes = 0, tokens = 0;
  for (int run = 0; run < repeats; ++run) {
    bytes = tokens = 0;
    const auto start = std::chrono::steady_clock::now();
    for (const std::string_view document : documents) {
      tokens += tokenizer.encode(document).size();
      bytes += document.size();
    }
    best_seconds = std::min(best_seconds, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::cout << nlohmann::json{{"documents", documents.size()}, {"bytes", bytes}, {"tokens", tokens},
                              {"seconds", best_seconds}, {"mb_per_s", bytes / best_seconds / 1e6},
                              {"tokens_per_s", tokens / best_seconds}}.dump()
            << "\n";
  return 0;
}

int train(const std::string& directory, const std::string& vocab_size, const std::string& kind,
          const std::string& corpus_path) {
  dsv3::data::BpeTrainerOptions options;
  options.vocab_size = std::stoll(vocab_size);
  DSV3_CHECK(kind == "deepseek_v3" || kind == "gpt2", "unknown pre-tokenizer '{}' (deepseek_v3 or gpt2)", kind);
  options.pre_tokenizer = kind == "gpt2" ? dsv3::data::PreTokenizerKind::gpt2 : dsv3::data::PreTokenizerKind::deepseek_v3;
  dsv3::data::BpeTrainer trainer(options);
  const std::string corpus = read_file(corpus_path);
  const auto start = std::chrono::steady_clock::now();
  for (const std::string_view document : split_documents(corpus)) trainer.add_document(document);
  const dsv3::data::BpeVocabulary vocabulary = trainer.train();
  trainer.save(vocabulary, directory);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cerr << fmt::format("trained {} tokens ({} merges) from {} distinct words in {:.2f} s\n",
                           vocabulary.tokens.size(), vocabulary.merges.size(), trainer.word_counts().size(), seconds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.size() == 3 && args[0] == "encode") return encode(args[1], args[2]);
    if ((args.size() == 3 || args.size() == 4) && args[0] == "bench") {
      return bench(args[1], args[2], args.size() == 4 ? std::stoi(args[3]) : 3);
    }
    if (args.size() == 5 && args[0] == "train") return train(args[1], args[2], args[3], args[4]);
  } catch (const std::exception& e) {
    std::cerr << "dsv3_tokenizer_tool: " << e.what() << "\n";
    return 1;
  }
  std::cerr << "usage: dsv3_tokenizer_tool encode TOKENIZER_JSON TEXTS_JSON\n"
               "       dsv3_tokenizer_tool bench TOKENIZER_JSON CORPUS [REPEATS]\n"
               "       dsv3_tokenizer_tool train OUT_DIR VOCAB_SIZE deepseek_v3|gpt2 CORPUS\n";
  return 2;
}
