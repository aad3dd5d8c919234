// dsv3_preprocess's work, run on 3 ranks: the same corpus tokenized on 1, 2 and 3 of them (sub-communicators)
// gives byte-identical token datasets, with the real tokenizer of tests/fixtures and with a byte-level encoding
// whose output is checked token for token; errors on one rank reach all; training a tokenizer does not depend
// on the number of ranks either.
#include "data/data_testing.hpp"
#include "dsv3/data/preprocess.hpp"
#include "dsv3/data/tokenizer.hpp"
#include "dsv3/io/token_dataset.hpp"
#include "io/io_testing.hpp"
#include "support/testing.hpp"

#include <doctest/doctest.h>
#include <mpi.h>

#include <fstream>
#include <string>
#include <vector>

using namespace dsv3;
using namespace dsv3::data;
using dsv3::testing::ScratchDirectory;

namespace {

using dsv3::testing::world_rank;

// The first `ranks` ranks of MPI_COMM_WORLD (MPI_COMM_NULL on the others).
class FirstRanks {
 public:
  explicit FirstRanks(int ranks) {
    MPI_Comm_split(MPI_COMM_WORLD, world_rank() < ranks ? 0 : MPI_UNDEFINED, world_rank(), &comm_);
  }
  FirstRanks(const FirstRanks&) = delete;
  FirstRanks& operator=(const FirstRanks&) = delete;
  ~FirstRanks() {
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }
  MPI_Comm comm() const { return comm_; }
  bool member() const { return comm_ != MPI_COMM_NULL; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

std::string file_bytes(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(file), {}};
}

// Writes a file on rank 0, seen by every rank on return.
void write_shared_file(const std::filesystem::path& path, std::string_view content) {
  if (world_rank() == 0) testing::write_file(path, content);
  MPI_Barrier(MPI_COMM_WORLD);
}

// A corpus of every kind of input, in the order given: fortune files of different sizes (one smaller than a
// rank's share, one empty, one starting with an empty document), JSONL and gzip JSONL, and a directory. Rank 0
// writes it; every rank returns the inputs once it is there.
std::vector<std::string> write_corpus(const ScratchDirectory& scratch) {
  if (world_rank() == 0) {
    std::string big;
    for (int d = 0; d < 200; ++d) {
      big += "Fortune " + std::to_string(d) + ": " + std::string(static_cast<std::size_t>(d % 23), 'a' + d % 26) +
             (d % 5 == 0 ? "\nsecond line, naïve café ✓" : "") + "\n%\n";
    }
    testing::write_file(scratch / "corpus" / "big", big);
    testing::write_file(scratch / "corpus" / "tiny", "Tiny.\n");
    testing::write_file(scratch / "corpus" / "empty", "");
    testing::write_file(scratch / "corpus" / "leading", "%\nAfter an empty one.\n%\n%\nAnd another.\n");
    std::string jsonl;
    for (int d = 0; d < 60; ++d) jsonl += "{\"text\": \"JSON document " + std::to_string(d) + "\\nwith two lines\"}\n";
    testing::write_file(scratch / "corpus" / "part.jsonl", jsonl);
    testing::write_gzip_file(scratch / "corpus" / "part.jsonl.gz", jsonl + "{\"text\": \"\"}\n");
    testing::write_file(scratch / "corpus" / "more" / "x", "In a directory.\n%\nTwo.\n");
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const auto path = [&](const char* name) { return (scratch / "corpus" / name).string(); };
  return {path("big"),        path("tiny"),          path("empty"), path("leading"),
          path("part.jsonl"), path("part.jsonl.gz"), path("more")};
}

TokenizeOptions tokenize_options(const std::vector<std::string>& inputs, const std::filesystem::path& output) {
  TokenizeOptions options;
  options.inputs = inputs;
  options.output = output;
  options.reader.text_separator = TextSeparator::parse("line=%");
  options.progress = false;
  return options;
}

// What a single reader sees: the corpus's documents in order.
std::vector<std::string> documents_in_order(const TokenizeOptions& options) {
  std::vector<std::string> documents;
  for (const InputFile& file : expand_inputs(options.inputs, options.reader)) {
    read_documents(file, {}, options.reader, [&](const Document& d) { documents.emplace_back(d.text); });
  }
  return documents;
}

// Tokenizes the corpus on 1, 2 and 3 ranks; on rank 0, checks the files are byte-identical and returns the path
// of the first.
std::filesystem::path tokenize_on_1_2_3_ranks(const ScratchDirectory& scratch, const std::string& name,
                                              const std::vector<std::string>& inputs, const DocumentEncoder& encoder) {
  std::vector<std::filesystem::path> outputs;
  for (const int ranks : {1, 2, 3}) {
    outputs.push_back(scratch / (name + "_" + std::to_string(ranks) + "_ranks.h5"));
    const FirstRanks group(ranks);
    if (!group.member()) continue;
    const TokenizeSummary summary = tokenize_corpus(tokenize_options(inputs, outputs.back()), encoder, group.comm());
    CHECK(summary.files == 7);
    CHECK(summary.documents == 200 + 1 + 2 + 60 + 60 + 2);
    CHECK(summary.empty_documents == 3);  // two in "leading", one in the gzip file
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) {
    const std::string one_rank = file_bytes(outputs[0]);
    CHECK(one_rank.size() > 1000);
    CHECK(file_bytes(outputs[1]) == one_rank);
    CHECK(file_bytes(outputs[2]) == one_rank);
  }
  return outputs[0];
}

}  // namespace

TEST_CASE("byte-level encoding: same file on 1, 2 and 3 ranks, every token where it belongs") {
  ScratchDirectory scratch("preprocess-bytes");
  const std::vector<std::string> inputs = write_corpus(scratch);
  const DocumentEncoder encoder = testing::byte_encoder();
  const std::filesystem::path output = tokenize_on_1_2_3_ranks(scratch, "bytes", inputs, encoder);
  if (world_rank() != 0) return;

  std::vector<std::int32_t> expected;
  std::vector<std::int64_t> expected_offsets = {0};
  for (const std::string& document : documents_in_order(tokenize_options(inputs, output))) {
    encoder.append(document, expected);
    expected_offsets.push_back(static_cast<std::int64_t>(expected.size()));
  }
  const io::TokenDataset dataset = io::TokenDataset::open(output);
  CHECK(dataset.metadata().tokenizer == encoder.identity());
  CHECK(dataset.metadata().empty_documents_skipped == 3);
  CHECK(dataset.metadata().source.find("7 file(s)") != std::string::npos);
  REQUIRE(dataset.n_tokens() == std::ssize(expected));
  std::vector<std::int32_t> tokens(expected.size());
  dataset.read_tokens(0, tokens);
  CHECK(tokens == expected);
  std::vector<std::int64_t> offsets(expected_offsets.size());
  REQUIRE(dataset.n_documents() + 1 == std::ssize(offsets));
  dataset.read_document_offsets(0, offsets);
  CHECK(offsets == expected_offsets);
}

TEST_CASE("the real tokenizer: same file on 1, 2 and 3 ranks, documents decode back") {
  ScratchDirectory scratch("preprocess-tokenizer");
  const Tokenizer tokenizer =
      Tokenizer::from_file(std::filesystem::path(DSV3_FIXTURES_DIR) / "tokenizer" / "dsv3_trained" / "tokenizer.json");
  const DocumentEncoder encoder = DocumentEncoder::from_tokenizer(tokenizer);
  const std::vector<std::string> inputs = write_corpus(scratch);
  const std::filesystem::path output = tokenize_on_1_2_3_ranks(scratch, "bpe", inputs, encoder);
  if (world_rank() != 0) return;

  const io::TokenDataset dataset = io::TokenDataset::open(output);
  CHECK_NOTHROW(dataset.require_tokenizer(encoder.identity()));
  const std::vector<std::string> documents = documents_in_order(tokenize_options(inputs, output));
  REQUIRE(dataset.n_documents() == std::ssize(documents));
  std::vector<std::int64_t> offsets(documents.size() + 1);
  dataset.read_document_offsets(0, offsets);
  for (std::size_t d = 0; d < documents.size(); d += 17) {
    std::vector<std::int32_t> packed(static_cast<std::size_t>(offsets[d + 1] - offsets[d]));
    dataset.read_tokens(offsets[d], packed);
    CHECK(packed.front() == *tokenizer.bos_id());
    CHECK(packed.back() == *tokenizer.eos_id());
    CHECK(tokenizer.decode(std::span(packed).subspan(1, packed.size() - 2)) == documents[d]);
  }
}

TEST_CASE("an error on one rank stops every rank, names the file and line, and writes nothing") {
  ScratchDirectory scratch("preprocess-errors");
  std::vector<std::string> inputs = write_corpus(scratch);
  // The last input, read by the last rank: invalid UTF-8 on line 3.
  write_shared_file(scratch / "corpus" / "z_latin1", "fine\n%\ncaf\xe9\n");
  inputs.push_back((scratch / "corpus" / "z_latin1").string());
  const DocumentEncoder encoder = testing::byte_encoder();
  const auto output = scratch / "never.h5";
  CHECK_ERROR_CONTAINS(tokenize_corpus(tokenize_options(inputs, output), encoder, MPI_COMM_WORLD),
                       inputs.back() + ":3: invalid UTF-8");

  inputs.back() = (scratch / "corpus" / "z_missing.jsonl").string();
  write_shared_file(inputs.back(), "{\"text\": \"a\"}\n{\"txt\": \"b\"}\n");
  CHECK_ERROR_CONTAINS(tokenize_corpus(tokenize_options(inputs, output), encoder, MPI_COMM_WORLD),
                       inputs.back() + ":2: no string field \"text\"");

  const std::vector<std::string> only_empty = {(scratch / "corpus" / "empty").string()};
  CHECK_ERROR_CONTAINS(tokenize_corpus(tokenize_options(only_empty, output), encoder, MPI_COMM_WORLD),
                       "no non-empty document");
  const std::vector<std::string> missing = {(scratch / "absent").string()};
  CHECK_ERROR_CONTAINS(tokenize_corpus(tokenize_options(missing, output), encoder, MPI_COMM_WORLD),
                       "input '" + missing[0] + "': no such file");
  MPI_Barrier(MPI_COMM_WORLD);
  CHECK_FALSE(std::filesystem::exists(output));
}

TEST_CASE("train-tokenizer: the same tokenizer on 1 and 3 ranks, and it loads") {
  ScratchDirectory scratch("preprocess-train-tokenizer");
  const std::vector<std::string> inputs = write_corpus(scratch);
  for (const int ranks : {1, 3}) {
    const FirstRanks group(ranks);
    if (!group.member()) continue;
    TrainTokenizerOptions options;
    options.inputs = inputs;
    options.output = scratch / ("tokenizer_" + std::to_string(ranks));
    options.reader.text_separator = TextSeparator::parse("line=%");
    options.trainer.vocab_size = 300;
    options.progress = false;
    const TrainTokenizerSummary summary = train_tokenizer(options, group.comm());
    CHECK(summary.documents == 325);
    CHECK(summary.vocab_size == 300);
    CHECK(summary.distinct_words > 100);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() != 0) return;
  const std::string one_rank = file_bytes(scratch / "tokenizer_1" / "tokenizer.json");
  CHECK(file_bytes(scratch / "tokenizer_3" / "tokenizer.json") == one_rank);
  const Tokenizer tokenizer = Tokenizer::from_file(scratch / "tokenizer_3" / "tokenizer.json");
  CHECK(tokenizer.vocab_size() == 300);
  CHECK(tokenizer.bos_id().has_value());
  CHECK(tokenizer.decode(tokenizer.encode("Fortune 12: naïve café")) == "Fortune 12: naïve café");
}
