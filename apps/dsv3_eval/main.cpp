// dsv3_eval: a checkpoint's loss, perplexity and per-position logits on given tokens (used by validation/).
//   dsv3_eval --checkpoint model.h5 --tokens-file ids.txt [--output logits.npy|logits.h5]
//   dsv3_eval --checkpoint model.h5 --tokenizer DIR --text "Hello world" [--output logits.npy]
// ids.txt: one sequence per line, token ids separated by spaces or commas (all lines of one length).
// Prints one JSON line: {"sequences", "tokens", "targets", "loss", "perplexity"}. Runs on one rank.
#include "dsv3/core/error.hpp"
#include "dsv3/data/tokenizer.hpp"
#include "dsv3/io/hdf5.hpp"
#include "dsv3/train/evaluation.hpp"

#include <boost/program_options.hpp>
#include <fmt/format.h>
#include <mpi.h>

#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace po = boost::program_options;
using namespace dsv3;

namespace {

std::vector<std::vector<std::int32_t>> read_token_lines(std::istream& stream, const std::string& source) {
  std::vector<std::vector<std::int32_t>> sequences;
  std::string line;
  for (int number = 1; std::getline(stream, line); ++number) {
    for (char& c : line) c = c == ',' ? ' ' : c;
    std::istringstream words(line);
    std::vector<std::int32_t> tokens;
    std::string word;
    while (words >> word) {
      std::size_t end = 0;
      long long value = -1;
      try {
        value = std::stoll(word, &end);
      } catch (const std::exception&) {
      }
      DSV3_CHECK(end == word.size() && value >= 0 && value <= INT32_MAX, "{}:{}: '{}' is not a token id", source,
                 number, word);
      tokens.push_back(static_cast<std::int32_t>(value));
    }
    if (!tokens.empty()) sequences.push_back(std::move(tokens));
  }
  DSV3_CHECK(!sequences.empty(), "{}: no token ids", source);
  return sequences;
}

// NumPy .npy, version 1.0, little-endian float32, C order.
void write_npy(const std::filesystem::path& path, const Tensor& values) {
  std::string shape;
  for (int axis = 0; axis < values.shape().rank(); ++axis) shape += fmt::format("{}, ", values.shape()[axis]);
  std::string header = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", shape);
  header.resize((header.size() + 11 + 63) / 64 * 64 - 11, ' ');
  header += '\n';
  std::ofstream stream(path, std::ios::binary);
  stream.write("\x93NUMPY\x01\x00", 8);
  const auto length = static_cast<std::uint16_t>(header.size());
  stream.put(static_cast<char>(length & 0xff)).put(static_cast<char>(length >> 8));
  stream << header;
  stream.write(static_cast<const char*>(values.raw()), static_cast<std::streamsize>(values.nbytes()));
  stream.close();
  DSV3_CHECK(stream, "{}: cannot write", path.string());
}

void write_logits(const std::filesystem::path& path, const train::Evaluation& evaluation) {
  if (path.extension() == ".npy") return write_npy(path, evaluation.logits);
  DSV3_CHECK(path.extension() == ".h5", "--output {}: expected a .npy or .h5 file", path.string());
  const io::h5::File file = io::h5::File::open(path, io::h5::File::Mode::create);
  std::vector<std::int64_t> shape;
  for (int axis = 0; axis < evaluation.logits.shape().rank(); ++axis) shape.push_back(evaluation.logits.shape()[axis]);
  const io::h5::Dataset logits = file.create_dataset("/logits", DType::f32, shape);
  logits.write_elements(0, evaluation.logits.numel(), DType::f32, evaluation.logits.raw());
  file.write_float_attribute("loss", evaluation.loss);
  file.write_float_attribute("perplexity", evaluation.perplexity());
  file.flush();
}

int run(int argc, char** argv) {
  std::string checkpoint, tokens_file, tokens, tokenizer, text, output, device;
  po::options_description options("dsv3_eval: loss, perplexity and logits of a checkpoint on token sequences");
  options.add_options()("help,h", "this help")("checkpoint", po::value(&checkpoint)->required(),
                                               "a dsv3 checkpoint (.h5)")(
      "tokens-file", po::value(&tokens_file), "token ids: one sequence per line")(
      "tokens", po::value(&tokens), "one sequence of token ids, e.g. 0,15,27")(
      "tokenizer", po::value(&tokenizer), "tokenizer.json or its folder, for --text")(
      "text", po::value(&text), "text to tokenize (one sequence)")(
      "output,o", po::value(&output), "logits [sequences, tokens, vocab] as .npy or .h5")(
      "device", po::value(&device), "cpu or cuda (default: cuda when a GPU is visible)");
  po::variables_map values;
  po::store(po::parse_command_line(argc, argv, options), values);
  if (values.count("help")) {
    std::cout << options;
    return 0;
  }
  po::notify(values);
  std::vector<std::vector<std::int32_t>> sequences;
  DSV3_CHECK(values.count("tokens-file") + values.count("tokens") + values.count("text") == 1,
             "give exactly one of --tokens-file, --tokens, --text");
  if (!tokens_file.empty()) {
    std::ifstream stream(tokens_file);
    DSV3_CHECK(stream, "{}: cannot open", tokens_file);
    sequences = read_token_lines(stream, tokens_file);
  } else if (!tokens.empty()) {
    std::istringstream stream(tokens);
    sequences = read_token_lines(stream, "--tokens");
  } else {
    DSV3_CHECK(!tokenizer.empty(), "--text needs --tokenizer");
    const std::filesystem::path path(tokenizer);
    sequences = {data::Tokenizer::from_file(std::filesystem::is_directory(path) ? path / "tokenizer.json" : path)
                     .encode(text)};
  }
  const auto length = static_cast<std::int64_t>(sequences[0].size());
  DSV3_CHECK(device.empty() || device == "cpu" || device == "cuda", "--device {}: expected cpu or cuda", device);
  DSV3_CHECK(device != "cuda" || cuda_available(), "--device cuda: {}",
             cuda_built() ? "no GPU is visible" : "this build of dsv3 has no CUDA backend");
  const Device on = device == "cuda" || (device.empty() && cuda_available()) ? Device::cuda : Device::cpu;
  const std::unique_ptr<model::Transformer> model = train::load_model(checkpoint, length, on);
  const train::Evaluation evaluation = train::evaluate(*model, sequences);
  if (!output.empty()) write_logits(output, evaluation);
  fmt::print("{{\"sequences\": {}, \"tokens\": {}, \"targets\": {}, \"loss\": {:.17g}, \"perplexity\": {:.17g}}}\n",
             sequences.size(), length, evaluation.targets, evaluation.loss, evaluation.perplexity());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int status = 0;
  try {
    status = run(argc, argv);
  } catch (const std::exception& error) {
    fmt::print(stderr, "dsv3_eval: error: {}\n", error.what());
    status = 1;
  }
  MPI_Finalize();
  return status;
}
