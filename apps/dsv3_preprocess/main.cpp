// dsv3_preprocess: corpora into what dsv3_train reads, in parallel over MPI ranks.
//   mpiexec -n 4 dsv3_preprocess tokenize --tokenizer DIR/tokenizer.json --output data.h5 [options] INPUT...
//   mpiexec -n 4 dsv3_preprocess train-tokenizer --vocab-size 2048 --output DIR [options] INPUT...
// INPUTs are files, directories or glob patterns of plain text, JSONL or gzip-compressed JSONL.
#include "dsv3/core/error.hpp"
#include "dsv3/data/preprocess.hpp"
#include "dsv3/data/tokenizer.hpp"

#include <boost/program_options.hpp>
#include <fmt/format.h>
#include <mpi.h>

#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

namespace po = boost::program_options;
using namespace dsv3;

namespace {

constexpr std::string_view kUsage =
    "usage: [mpiexec -n N] dsv3_preprocess COMMAND [options] INPUT...\n"
    "commands:\n"
    "  tokenize         text/JSONL corpus -> one HDF5 token dataset for dsv3_train (training.dataset_path)\n"
    "  train-tokenizer  train a byte-level BPE tokenizer (tokenizer.json) on a corpus\n"
    "INPUTs are files, directories (searched recursively) or glob patterns; *.jsonl, *.json and their .gz are\n"
    "JSONL, everything else plain text. The output does not depend on the number of ranks.\n";

struct ReaderFlags {
  std::string format = "auto";
  std::string text_separator = "file";
  std::string json_text_field = "text";
  bool quiet = false;
  std::vector<std::string> inputs;

  void add_to(po::options_description& options) {
    options.add_options()("format", po::value(&format)->default_value(format),
                          "input format: auto (by extension), text or jsonl")(
        "text-separator", po::value(&text_separator)->default_value(text_separator),
        "how plain text splits into documents: file (one per file), blank (blank lines), or line=TEXT (a line "
        "equal to TEXT, e.g. line=% for fortune files)")("json-text-field",
                                                         po::value(&json_text_field)->default_value(json_text_field),
                                                         "the field of each JSONL object that holds the document")(
        "quiet,q", po::bool_switch(&quiet), "no progress report");
  }

  data::DocumentReaderOptions reader() const {
    data::DocumentReaderOptions options;
    if (format == "text") {
      options.format = data::InputFormat::text;
    } else if (format == "jsonl") {
      options.format = data::InputFormat::jsonl;
    } else {
      DSV3_CHECK(format == "auto", "--format {}: expected auto, text or jsonl", format);
    }
    options.text_separator = data::TextSeparator::parse(text_separator);
    options.json_text_field = json_text_field;
    return options;
  }
};

// Parses `arguments` (after the command) into `options` plus positional INPUTs; false when --help was asked.
bool parse(const std::vector<std::string>& arguments, po::options_description& options, ReaderFlags& reader,
           const std::string& command, int rank) {
  options.add_options()("help,h", "this help");
  reader.add_to(options);
  po::options_description hidden;
  hidden.add_options()("input", po::value(&reader.inputs));
  po::options_description all;
  all.add(options).add(hidden);
  po::positional_options_description positional;
  positional.add("input", -1);
  po::variables_map values;
  po::store(po::command_line_parser(arguments).options(all).positional(positional).run(), values);
  if (values.count("help")) {
    if (rank == 0) std::cout << "usage: dsv3_preprocess " << command << " [options] INPUT...\n" << options;
    return false;
  }
  po::notify(values);
  DSV3_CHECK(!reader.inputs.empty(), "dsv3_preprocess {}: no INPUT given", command);
  return true;
}

std::filesystem::path tokenizer_json(const std::filesystem::path& path) {
  return std::filesystem::is_directory(path) ? path / "tokenizer.json" : path;
}

int tokenize(const std::vector<std::string>& arguments, MPI_Comm comm, int rank, int ranks) {
  std::string tokenizer_path;
  std::string output;
  po::options_description options("tokenize: text/JSONL corpus -> HDF5 token dataset");
  options.add_options()("tokenizer", po::value(&tokenizer_path)->required(),
                        "tokenizer.json, or the directory holding it")("output,o", po::value(&output)->required(),
                                                                       "the token dataset to write (.h5)");
  ReaderFlags reader;
  if (!parse(arguments, options, reader, "tokenize", rank)) return 0;

  const data::Tokenizer tokenizer = data::Tokenizer::from_file(tokenizer_json(tokenizer_path));
  const data::DocumentEncoder encoder = data::DocumentEncoder::from_tokenizer(tokenizer);
  const data::TokenizeSummary summary =
      data::tokenize_corpus({reader.inputs, output, reader.reader(), !reader.quiet}, encoder, comm);
  if (rank == 0) {
    fmt::print(
        "dsv3_preprocess tokenize: {} file(s), {:.2f} MB, {} documents ({} empty skipped), {} tokens in "
        "{:.2f} s = {:.2f} MB/s on {} rank(s) -> {}\n",
        summary.files, summary.input_bytes / 1e6, summary.documents, summary.empty_documents, summary.tokens,
        summary.seconds, summary.input_bytes / 1e6 / summary.seconds, ranks, output);
  }
  return 0;
}

int train_tokenizer(const std::vector<std::string>& arguments, MPI_Comm comm, int rank) {
  data::TrainTokenizerOptions train;
  std::string output;
  std::string pre_tokenizer = "deepseek_v3";
  po::options_description options("train-tokenizer: byte-level BPE tokenizer from a corpus");
  options.add_options()("vocab-size", po::value(&train.trainer.vocab_size)->default_value(train.trainer.vocab_size),
                        "tokens in all: special tokens, 256 bytes, merges")(
      "output,o", po::value(&output)->required(), "directory for tokenizer.json and tokenizer_config.json")(
      "pre-tokenizer", po::value(&pre_tokenizer)->default_value(pre_tokenizer),
      "deepseek_v3 (DeepSeek-V3's split rules) or gpt2")(
      "min-frequency", po::value(&train.trainer.min_frequency)->default_value(train.trainer.min_frequency),
      "stop when no pair occurs this often");
  ReaderFlags reader;
  if (!parse(arguments, options, reader, "train-tokenizer", rank)) return 0;

  DSV3_CHECK(pre_tokenizer == "deepseek_v3" || pre_tokenizer == "gpt2",
             "--pre-tokenizer {}: expected deepseek_v3 or gpt2", pre_tokenizer);
  train.trainer.pre_tokenizer =
      pre_tokenizer == "gpt2" ? data::PreTokenizerKind::gpt2 : data::PreTokenizerKind::deepseek_v3;
  train.inputs = reader.inputs;
  train.output = output;
  train.reader = reader.reader();
  train.progress = !reader.quiet;
  const data::TrainTokenizerSummary summary = data::train_tokenizer(train, comm);
  if (rank == 0) {
    fmt::print(
        "dsv3_preprocess train-tokenizer: {} file(s), {} documents ({} empty skipped), {} distinct words -> "
        "{} tokens in {:.2f} s -> {}\n",
        summary.files, summary.documents, summary.empty_documents, summary.distinct_words, summary.vocab_size,
        summary.seconds, (std::filesystem::path(output) / "tokenizer.json").string());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  int ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  int status = 0;
  const std::string command = argc > 1 ? argv[1] : "";
  const std::vector<std::string> arguments(argv + std::min(argc, 2), argv + argc);
  try {
    if (command == "tokenize") {
      status = tokenize(arguments, MPI_COMM_WORLD, rank, ranks);
    } else if (command == "train-tokenizer") {
      status = train_tokenizer(arguments, MPI_COMM_WORLD, rank);
    } else {
      if (rank == 0) std::cerr << kUsage;
      status = command == "--help" || command == "-h" ? 0 : 2;
    }
  } catch (const std::exception& error) {
    // Every rank meets the same error (the library agrees on failures before collective steps), so one prints it.
    if (rank == 0) fmt::print(stderr, "dsv3_preprocess {}: error: {}\n", command, error.what());
    status = 1;
  }
  MPI_Finalize();
  return status;
}
