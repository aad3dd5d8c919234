// The data loader: torchtitan's windows, document ids, data-parallel sharding, epochs, seeds, saved state and
// the validation split. Data-parallel ranks are simulated by several loaders in one process.
#include "data/data_testing.hpp"
#include "dsv3/data/dataloader.hpp"
#include "dsv3/data/preprocess.hpp"
#include "io/io_testing.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>
#include <vector>

using namespace dsv3;
using namespace dsv3::data;
using dsv3::testing::ScratchDirectory;

namespace {

constexpr std::int32_t kBos = 1;
constexpr std::int32_t kEos = 2;
const io::TokenizerIdentity kTokenizer{"loader-test-tokenizer", 1000, kBos, kEos};

std::vector<std::int32_t> row(const Tensor& tensor, std::int64_t index) {
  const Tensor r = tensor.rank() == 2 ? tensor[index] : tensor;
  const std::int32_t* data = r.data<std::int32_t>();
  return {data, data + r.numel()};
}

// Writes documents (ids without BOS/EOS) as a token dataset; returns the packed stream.
std::vector<std::int32_t> write_documents(const std::filesystem::path& path,
                                          const std::vector<std::vector<std::int32_t>>& documents) {
  std::vector<std::int32_t> stream;
  std::vector<std::int64_t> lengths;
  for (const auto& document : documents) {
    stream.push_back(kBos);
    stream.insert(stream.end(), document.begin(), document.end());
    stream.push_back(kEos);
    lengths.push_back(static_cast<std::int64_t>(document.size()) + 2);
  }
  io::write_token_dataset(path, MPI_COMM_SELF, {kTokenizer, "loader test", 0}, stream, lengths);
  return stream;
}

// `count` documents of varied lengths whose ids run through 3..999, so that windows differ from each other.
std::vector<std::vector<std::int32_t>> numbered_documents(int count) {
  std::vector<std::vector<std::int32_t>> documents;
  std::int32_t next = 0;
  for (int d = 0; d < count; ++d) {
    std::vector<std::int32_t> document(static_cast<std::size_t>(1 + (d * 7) % 13));
    for (auto& id : document) id = 3 + (next++ % 997);
    documents.push_back(document);
  }
  return documents;
}

DataLoaderOptions options_for(const std::filesystem::path& path, std::int64_t batch_size, std::int64_t seq_len) {
  DataLoaderOptions options;
  options.inputs = {path.string()};
  options.batch_size = batch_size;
  options.seq_len = seq_len;
  return options;
}

// The window index of each row of a batch, found by its inputs (windows are told apart by their content).
class WindowIndex {
 public:
  WindowIndex(const std::vector<std::int32_t>& stream, std::int64_t seq_len) {
    const std::int64_t width = seq_len + 1;
    for (std::int64_t k = 0; (k + 1) * width <= std::ssize(stream); ++k) {
      index_[{stream.begin() + k * width, stream.begin() + k * width + seq_len}] = k;
    }
  }
  std::int64_t size() const { return static_cast<std::int64_t>(index_.size()); }
  std::vector<std::int64_t> windows_of(const Batch& batch) const {
    std::vector<std::int64_t> windows;
    for (std::int64_t r = 0; r < batch.inputs.size(0); ++r) {
      const auto found = index_.find(row(batch.inputs, r));
      windows.push_back(found == index_.end() ? -1 : found->second);
    }
    return windows;
  }

 private:
  std::map<std::vector<std::int32_t>, std::int64_t> index_;
};

}  // namespace

TEST_CASE("a window gives shifted inputs and labels, BOS/EOS in place, document ids and positions") {
  ScratchDirectory scratch("loader-windows");
  const auto path = scratch / "small.h5";
  // Stream: 1 5 6 7 2 | 1 8 2 1 9 | 10 11 12 13 2, windows of 5 for seq_len 4.
  write_documents(path, {{5, 6, 7}, {8}, {9, 10, 11, 12, 13}});
  DataLoaderOptions options = options_for(path, 3, 4);
  options.shuffle = false;
  DataLoader loader(options, nullptr);
  CHECK(loader.windows_per_epoch() == 3);
  const Batch batch = loader.next();
  CHECK(batch.inputs.shape() == Shape{3, 4});
  CHECK(batch.inputs.dtype() == DType::i32);
  CHECK(batch.labels.shape() == Shape{3, 4});
  CHECK(batch.document_ids.shape() == Shape{3, 4});
  CHECK(batch.positions.shape() == Shape{4});
  CHECK(row(batch.inputs, 0) == std::vector<std::int32_t>{1, 5, 6, 7});
  CHECK(row(batch.labels, 0) == std::vector<std::int32_t>{5, 6, 7, 2});
  CHECK(row(batch.document_ids, 0) == std::vector<std::int32_t>{0, 0, 0, 0});
  CHECK(row(batch.inputs, 1) == std::vector<std::int32_t>{1, 8, 2, 1});
  CHECK(row(batch.labels, 1) == std::vector<std::int32_t>{8, 2, 1, 9});
  // The EOS at position 2 belongs to the document it ends; the BOS after it starts document 1.
  CHECK(row(batch.document_ids, 1) == std::vector<std::int32_t>{0, 0, 0, 1});
  // A window may start inside a document: ids restart at 0 in each window.
  CHECK(row(batch.inputs, 2) == std::vector<std::int32_t>{10, 11, 12, 13});
  CHECK(row(batch.labels, 2) == std::vector<std::int32_t>{11, 12, 13, 2});
  CHECK(row(batch.document_ids, 2) == std::vector<std::int32_t>{0, 0, 0, 0});
  CHECK(row(batch.positions, 0) == std::vector<std::int32_t>{0, 1, 2, 3});
  CHECK(loader.state() == DataLoaderState{1, 0, 0, 3});
  CHECK(loader.tokenizer() == kTokenizer);
  CHECK(loader.describe().find("3 windows of 5 tokens per epoch in the training split, in order") != std::string::npos);
}

TEST_CASE("data-parallel ranks share each global batch without overlap or gap") {
  ScratchDirectory scratch("loader-sharding");
  const auto path = scratch / "numbered.h5";
  const std::int64_t seq_len = 16;
  const std::vector<std::int32_t> stream = write_documents(path, numbered_documents(300));
  const WindowIndex index(stream, seq_len);
  const std::int64_t windows = index.size();
  REQUIRE(windows >= 64);

  for (const bool shuffle : {false, true}) {
    CAPTURE(shuffle);
    // The reference: one rank taking the whole global batch of 8.
    DataLoaderOptions single = options_for(path, 8, seq_len);
    single.shuffle = shuffle;
    single.seed = 1234;
    DataLoader reference(single, nullptr);
    const std::int64_t steps = windows / 8 + 3;  // a little more than an epoch
    std::vector<std::vector<std::int64_t>> reference_windows;
    for (std::int64_t step = 0; step < steps; ++step) reference_windows.push_back(index.windows_of(reference.next()));

    // The first epoch covers every window once.
    std::vector<std::int64_t> first_epoch;
    for (std::int64_t step = 0; step < steps; ++step) {
      for (const std::int64_t w : reference_windows[step]) first_epoch.push_back(w);
    }
    first_epoch.resize(static_cast<std::size_t>(windows));
    std::sort(first_epoch.begin(), first_epoch.end());
    for (std::int64_t k = 0; k < windows; ++k) REQUIRE(first_epoch[k] == k);

    for (const int dp_size : {1, 2, 4}) {
      CAPTURE(dp_size);
      std::vector<DataLoader> ranks;
      for (int dp_rank = 0; dp_rank < dp_size; ++dp_rank) {
        DataLoaderOptions options = single;
        options.batch_size = 8 / dp_size;
        options.dp_rank = dp_rank;
        options.dp_size = dp_size;
        ranks.emplace_back(options, nullptr);
      }
      for (std::int64_t step = 0; step < steps; ++step) {
        std::vector<std::int64_t> together;
        for (DataLoader& loader : ranks) {
          const std::vector<std::int64_t> mine = index.windows_of(loader.next());
          together.insert(together.end(), mine.begin(), mine.end());
        }
        // Rank r holds rows [r·B, (r+1)·B) of the single rank's global batch.
        REQUIRE(together == reference_windows[step]);
      }
      for (const DataLoader& loader : ranks) CHECK(loader.state() == reference.state());
    }
  }
}

TEST_CASE("epochs: each visits every window once, the batch runs on into the next epoch") {
  ScratchDirectory scratch("loader-epochs");
  const auto path = scratch / "numbered.h5";
  const std::int64_t seq_len = 10;
  const std::vector<std::int32_t> stream = write_documents(path, numbered_documents(40));
  const WindowIndex index(stream, seq_len);
  const std::int64_t windows = index.size();
  REQUIRE(windows % 3 != 0);
  DataLoaderOptions options = options_for(path, 3, seq_len);
  options.seed = 5;
  DataLoader loader(options, nullptr);
  std::vector<std::int64_t> sequence;
  for (std::int64_t step = 0; step * 3 < 3 * windows; ++step) {
    const std::vector<std::int64_t> batch = index.windows_of(loader.next());
    sequence.insert(sequence.end(), batch.begin(), batch.end());
    const std::int64_t taken = (step + 1) * 3;
    CHECK(loader.state().epoch == taken / windows);
    CHECK(loader.state().position == taken % windows);
  }
  std::vector<std::vector<std::int64_t>> epochs;
  for (int epoch = 0; epoch < 3; ++epoch) {
    std::vector<std::int64_t> order(sequence.begin() + epoch * windows, sequence.begin() + (epoch + 1) * windows);
    std::vector<std::int64_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    for (std::int64_t k = 0; k < windows; ++k) REQUIRE(sorted[k] == k);
    epochs.push_back(order);
  }
  // Shuffled, and differently in each epoch.
  CHECK_FALSE(std::is_sorted(epochs[0].begin(), epochs[0].end()));
  CHECK(epochs[0] != epochs[1]);
  CHECK(epochs[1] != epochs[2]);
}

TEST_CASE("the same seed gives the same batches, another seed others") {
  ScratchDirectory scratch("loader-seeds");
  const auto path = scratch / "numbered.h5";
  write_documents(path, numbered_documents(100));
  const auto first_batches = [&](std::uint64_t seed) {
    DataLoaderOptions options = options_for(path, 4, 12);
    options.seed = seed;
    DataLoader loader(options, nullptr);
    std::vector<std::vector<std::int32_t>> inputs;
    for (int step = 0; step < 5; ++step) {
      const Batch batch = loader.next();
      for (std::int64_t r = 0; r < 4; ++r) inputs.push_back(row(batch.inputs, r));
    }
    return inputs;
  };
  CHECK(first_batches(11) == first_batches(11));
  CHECK(first_batches(11) != first_batches(12));
}

TEST_CASE("a saved state continues exactly, mid-epoch and across epochs") {
  ScratchDirectory scratch("loader-state");
  const auto path = scratch / "numbered.h5";
  write_documents(path, numbered_documents(80));
  DataLoaderOptions options = options_for(path, 3, 9);
  options.seed = 77;
  options.dp_size = 2;
  options.dp_rank = 1;
  DataLoader original(options, nullptr);
  for (int step = 0; step < 4; ++step) original.next();
  const DataLoaderState saved = original.state();
  CHECK(saved.epoch == 0);
  CHECK(saved.position == 24);
  CHECK(saved.seed == 77);
  std::vector<std::vector<std::int32_t>> expected;
  for (int step = 0; step < 30; ++step) {  // well into later epochs
    const Batch batch = original.next();
    for (std::int64_t r = 0; r < 3; ++r) expected.push_back(row(batch.labels, r));
  }
  CHECK(original.state().epoch >= 2);

  DataLoaderOptions fresh_options = options;
  fresh_options.seed = 0;  // the state brings its seed
  DataLoader resumed(fresh_options, nullptr);
  resumed.restore(saved);
  std::vector<std::vector<std::int32_t>> continued;
  for (int step = 0; step < 30; ++step) {
    const Batch batch = resumed.next();
    for (std::int64_t r = 0; r < 3; ++r) continued.push_back(row(batch.labels, r));
  }
  CHECK(continued == expected);
  CHECK(resumed.state() == original.state());

  DataLoaderState other = saved;
  other.windows_per_epoch += 1;
  CHECK_ERROR_CONTAINS(resumed.restore(other), "the saved state is for");
  other = saved;
  other.position = saved.windows_per_epoch;
  CHECK_ERROR_CONTAINS(resumed.restore(other), "invalid saved state");
}

TEST_CASE("the validation split holds out the last windows, disjoint from training") {
  ScratchDirectory scratch("loader-validation");
  const auto path = scratch / "numbered.h5";
  const std::int64_t seq_len = 8;
  const std::vector<std::int32_t> stream = write_documents(path, numbered_documents(60));
  const WindowIndex index(stream, seq_len);
  const std::int64_t windows = index.size();
  DataLoaderOptions options = options_for(path, 1, seq_len);
  options.validation_fraction = 0.1;
  DataLoader training(options, nullptr);
  options.split = Split::validation;
  options.shuffle = false;
  DataLoader validation(options, nullptr);
  const std::int64_t held_out = std::llround(0.1 * static_cast<double>(windows));
  CHECK(validation.windows_per_epoch() == held_out);
  CHECK(training.windows_per_epoch() == windows - held_out);
  std::set<std::int64_t> training_windows;
  for (std::int64_t step = 0; step < training.windows_per_epoch(); ++step) {
    training_windows.insert(index.windows_of(training.next()).front());
  }
  CHECK(std::ssize(training_windows) == windows - held_out);
  for (std::int64_t step = 0; step < held_out; ++step) {
    const std::int64_t window = index.windows_of(validation.next()).front();
    CHECK(window == windows - held_out + step);
    CHECK(training_windows.count(window) == 0);
  }
  CHECK(validation.describe().find("validation split") != std::string::npos);

  options.validation_fraction = 0.0;
  CHECK_ERROR_CONTAINS(DataLoader(options, nullptr), "the validation split needs validation_fraction > 0");
}

TEST_CASE("text inputs tokenized on load give what their token dataset gives") {
  ScratchDirectory scratch("loader-text");
  const auto text = scratch / "fortunes";
  std::string content;
  for (int d = 0; d < 50; ++d)
    content += "Fortune number " + std::to_string(d) + " says " + std::string(d % 9, '!') + "\n%\n";
  testing::write_file(text, content);
  const DocumentEncoder encoder = testing::byte_encoder();
  TokenizeOptions tokenize;
  tokenize.inputs = {text.string()};
  tokenize.output = scratch / "fortunes.h5";
  tokenize.reader.text_separator = TextSeparator::parse("line=%");
  tokenize.progress = false;
  tokenize_corpus(tokenize, encoder, MPI_COMM_SELF);

  DataLoaderOptions from_dataset = options_for(tokenize.output, 2, 32);
  from_dataset.seed = 3;
  DataLoaderOptions from_text = from_dataset;
  from_text.inputs = {text.string()};
  from_text.text = tokenize.reader;
  DataLoader dataset_loader(from_dataset, &encoder);
  DataLoader text_loader(from_text, &encoder);
  CHECK(text_loader.windows_per_epoch() == dataset_loader.windows_per_epoch());
  for (int step = 0; step < 20; ++step) {
    const Batch a = dataset_loader.next();
    const Batch b = text_loader.next();
    for (std::int64_t r = 0; r < 2; ++r) {
      REQUIRE(row(a.inputs, r) == row(b.inputs, r));
      REQUIRE(row(a.labels, r) == row(b.labels, r));
      REQUIRE(row(a.document_ids, r) == row(b.document_ids, r));
    }
  }
  CHECK(text_loader.describe().find("50 documents") != std::string::npos);
}

TEST_CASE("loader errors") {
  ScratchDirectory scratch("loader-errors");
  const auto path = scratch / "small.h5";
  write_documents(path, {{5, 6, 7}, {8}});
  const DocumentEncoder other_tokenizer = testing::byte_encoder();
  CHECK_ERROR_CONTAINS(DataLoader(options_for(path, 1, 4), &other_tokenizer),
                       path.string() + ": this token dataset was made with another tokenizer");
  CHECK_ERROR_CONTAINS(DataLoader(options_for(path, 1, 8), nullptr), "has 8 tokens, 0 window(s) of seq_len + 1 = 9");
  CHECK_ERROR_CONTAINS(DataLoader(options_for(path, 0, 4), nullptr), "batch_size (0) must be positive");
  DataLoaderOptions bad_rank = options_for(path, 1, 4);
  bad_rank.dp_rank = 2;
  bad_rank.dp_size = 2;
  CHECK_ERROR_CONTAINS(DataLoader(bad_rank, nullptr), "data-parallel rank 2 outside [0, 2)");
  testing::write_file(scratch / "notes.txt", "some text");
  CHECK_ERROR_CONTAINS(DataLoader(options_for(scratch / "notes.txt", 1, 4), nullptr), "need the run's tokenizer");
  DataLoaderOptions mixed = options_for(path, 1, 4);
  mixed.inputs.push_back((scratch / "notes.txt").string());
  CHECK_ERROR_CONTAINS(DataLoader(mixed, nullptr), "must be the only input");
  CHECK_ERROR_CONTAINS(DataLoader(options_for(scratch / "absent.h5", 1, 4), nullptr),
                       (scratch / "absent.h5").string() + ": no such file");
}
