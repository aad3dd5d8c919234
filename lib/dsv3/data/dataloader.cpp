#include "dsv3/data/dataloader.hpp"

#include "dsv3/core/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>

namespace dsv3::data {

// The packed token stream a loader cuts into windows.
class TokenSource {
 public:
  virtual ~TokenSource() = default;
  virtual std::int64_t n_tokens() const = 0;
  virtual void read(std::int64_t begin, std::span<std::int32_t> out) const = 0;
  virtual const io::TokenizerIdentity& tokenizer() const = 0;
  virtual std::string describe() const = 0;
};

namespace {

class TokenDatasetSource final : public TokenSource {
 public:
  explicit TokenDatasetSource(io::TokenDataset dataset) : dataset_(std::move(dataset)) {}
  std::int64_t n_tokens() const override { return dataset_.n_tokens(); }
  void read(std::int64_t begin, std::span<std::int32_t> out) const override { dataset_.read_tokens(begin, out); }
  const io::TokenizerIdentity& tokenizer() const override { return dataset_.metadata().tokenizer; }
  std::string describe() const override {
    return fmt::format("token dataset {} ({} documents)", dataset_.path().string(), dataset_.n_documents());
  }

 private:
  io::TokenDataset dataset_;
};

// Text inputs, tokenized once when the loader is made.
class PackedTextSource final : public TokenSource {
 public:
  PackedTextSource(const std::vector<InputFile>& files, const DocumentReaderOptions& options,
                   const DocumentEncoder& encoder)
      : tokenizer_(encoder.identity()), n_files_(files.size()) {
    for (const InputFile& file : files) {
      counts_ += read_documents(file, ByteRange{}, options,
                                [&](const Document& document) { encoder.append(document.text, tokens_); });
    }
  }
  std::int64_t n_tokens() const override { return static_cast<std::int64_t>(tokens_.size()); }
  void read(std::int64_t begin, std::span<std::int32_t> out) const override {
    std::copy_n(tokens_.begin() + begin, out.size(), out.begin());
  }
  const io::TokenizerIdentity& tokenizer() const override { return tokenizer_; }
  std::string describe() const override {
    return fmt::format("{} text file(s) tokenized on load ({} documents, {} empty ones skipped)", n_files_,
                       counts_.documents, counts_.empty_documents);
  }

 private:
  io::TokenizerIdentity tokenizer_;
  std::size_t n_files_;
  DocumentCounts counts_;
  std::vector<std::int32_t> tokens_;
};

bool is_token_dataset(const std::string& input) {
  const std::string extension = std::filesystem::path(input).extension().string();
  return extension == ".h5" || extension == ".hdf5";
}

std::unique_ptr<TokenSource> open_source(const DataLoaderOptions& options, const DocumentEncoder* encoder) {
  DSV3_CHECK(!options.inputs.empty(), "data loader: no inputs given");
  if (std::any_of(options.inputs.begin(), options.inputs.end(), is_token_dataset)) {
    DSV3_CHECK(options.inputs.size() == 1,
               "data loader: a token dataset ({}) must be the only input; merge corpora with dsv3_preprocess",
               options.inputs.front());
    io::TokenDataset dataset = io::TokenDataset::open(options.inputs.front());
    if (encoder != nullptr) dataset.require_tokenizer(encoder->identity());
    return std::make_unique<TokenDatasetSource>(std::move(dataset));
  }
  DSV3_CHECK(encoder != nullptr, "data loader: text inputs ({}, ...) need the run's tokenizer", options.inputs.front());
  return std::make_unique<PackedTextSource>(expand_inputs(options.inputs, options.text), options.text, *encoder);
}

// ---- seeded permutation ------------------------------------------------------------------------------------

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// A seeded bijection of [0, n), evaluated per index in O(1) without storing it (an epoch of a large corpus has
// tens of millions of windows): a 4-round Feistel network on the smallest even number of bits that covers n,
// with cycle walking past the values ≥ n (fewer than 4 steps on average, since the domain is < 4n).
class SeededPermutation {
 public:
  SeededPermutation(std::uint64_t n, std::uint64_t key) : n_(n) {
    const int bits = n > 1 ? std::bit_width(n - 1) : 1;
    half_bits_ = (bits + 1) / 2;
    mask_ = (std::uint64_t{1} << half_bits_) - 1;
    for (auto& round_key : round_keys_) round_key = key = splitmix64(key);
  }

  std::uint64_t operator()(std::uint64_t index) const {
    std::uint64_t value = index;
    do {
      value = encrypt(value);
    } while (value >= n_);
    return value;
  }

 private:
  std::uint64_t encrypt(std::uint64_t value) const {
    std::uint64_t left = value >> half_bits_;
    std::uint64_t right = value & mask_;
    for (const std::uint64_t round_key : round_keys_) {
      const std::uint64_t mixed = left ^ (splitmix64(right ^ round_key) & mask_);
      left = right;
      right = mixed;
    }
    return (left << half_bits_) | right;
  }

  std::uint64_t n_;
  int half_bits_ = 1;
  std::uint64_t mask_ = 1;
  std::array<std::uint64_t, 4> round_keys_{};
};

}  // namespace

// ---- DataLoader --------------------------------------------------------------------------------------------

DataLoader::DataLoader(DataLoaderOptions options, const DocumentEncoder* encoder) : options_(std::move(options)) {
  const DataLoaderOptions& o = options_;
  DSV3_CHECK(o.seq_len > 0 && o.batch_size > 0, "data loader: seq_len ({}) and batch_size ({}) must be positive",
             o.seq_len, o.batch_size);
  DSV3_CHECK(o.dp_size > 0 && o.dp_rank >= 0 && o.dp_rank < o.dp_size,
             "data loader: data-parallel rank {} outside [0, {})", o.dp_rank, o.dp_size);
  DSV3_CHECK(o.validation_fraction >= 0.0 && o.validation_fraction < 1.0,
             "data loader: validation_fraction {} outside [0, 1)", o.validation_fraction);
  source_ = open_source(o, encoder);

  const std::int64_t window_tokens = o.seq_len + 1;
  const std::int64_t windows = source_->n_tokens() / window_tokens;
  const std::int64_t held_out =
      o.validation_fraction > 0.0
          ? std::max<std::int64_t>(1, std::llround(o.validation_fraction * static_cast<double>(windows)))
          : 0;
  DSV3_CHECK(windows - held_out >= 1,
             "data loader: {} has {} tokens, {} window(s) of seq_len + 1 = {} tokens: too few for a training split "
             "(validation_fraction {})",
             source_->describe(), source_->n_tokens(), windows, window_tokens, o.validation_fraction);
  DSV3_CHECK(o.split == Split::training || held_out > 0,
             "data loader: the validation split needs validation_fraction > 0 (or give the validation loader its own "
             "dataset and take its training split)");
  first_window_ = o.split == Split::training ? 0 : windows - held_out;
  windows_per_epoch_ = o.split == Split::training ? windows - held_out : held_out;
  window_.resize(static_cast<std::size_t>(window_tokens));
}

DataLoader::DataLoader(DataLoader&&) noexcept = default;
DataLoader& DataLoader::operator=(DataLoader&&) noexcept = default;
DataLoader::~DataLoader() = default;

const io::TokenizerIdentity& DataLoader::tokenizer() const { return source_->tokenizer(); }

void DataLoader::read_window(std::int64_t global_index, std::int32_t* inputs, std::int32_t* labels,
                             std::int32_t* document_ids) {
  const auto epoch = static_cast<std::uint64_t>(global_index / windows_per_epoch_);
  const auto index = static_cast<std::uint64_t>(global_index % windows_per_epoch_);
  const std::uint64_t epoch_key = splitmix64(options_.seed ^ splitmix64(epoch));
  const std::uint64_t within_split =
      options_.shuffle ? SeededPermutation(static_cast<std::uint64_t>(windows_per_epoch_), epoch_key)(index) : index;
  const std::int64_t window = first_window_ + static_cast<std::int64_t>(within_split);
  source_->read(window * (options_.seq_len + 1), window_);

  const std::int32_t eos = source_->tokenizer().eos_id;
  std::int32_t document = 0;
  for (std::int64_t i = 0; i < options_.seq_len; ++i) {
    inputs[i] = window_[i];
    labels[i] = window_[i + 1];
    document_ids[i] = document;
    if (window_[i] == eos) ++document;
  }
}

Batch DataLoader::next() {
  const std::int64_t rows = options_.batch_size;
  const std::int64_t columns = options_.seq_len;
  Batch batch{Tensor::empty({rows, columns}, DType::i32), Tensor::empty({rows, columns}, DType::i32),
              Tensor::empty({rows, columns}, DType::i32), Tensor::empty({columns}, DType::i32)};
  const std::int64_t first = cursor_ + options_.dp_rank * rows;
  for (std::int64_t row = 0; row < rows; ++row) {
    read_window(first + row, batch.inputs.data<std::int32_t>() + row * columns,
                batch.labels.data<std::int32_t>() + row * columns,
                batch.document_ids.data<std::int32_t>() + row * columns);
  }
  std::int32_t* positions = batch.positions.data<std::int32_t>();
  for (std::int64_t i = 0; i < columns; ++i) positions[i] = static_cast<std::int32_t>(i);
  cursor_ += rows * options_.dp_size;
  return batch;
}

DataLoaderState DataLoader::state() const {
  return {cursor_ / windows_per_epoch_, cursor_ % windows_per_epoch_, options_.seed, windows_per_epoch_};
}

void DataLoader::restore(const DataLoaderState& state) {
  DSV3_CHECK(state.windows_per_epoch == windows_per_epoch_,
             "data loader: the saved state is for {} windows per epoch, but {} gives {} (other data, seq_len or "
             "validation_fraction?)",
             state.windows_per_epoch, source_->describe(), windows_per_epoch_);
  DSV3_CHECK(state.epoch >= 0 && state.position >= 0 && state.position < windows_per_epoch_,
             "data loader: invalid saved state (epoch {}, position {})", state.epoch, state.position);
  options_.seed = state.seed;
  cursor_ = state.epoch * windows_per_epoch_ + state.position;
}

std::string DataLoader::describe() const {
  return fmt::format("{}: {} tokens, {} windows of {} tokens per epoch in the {} split, {}", source_->describe(),
                     source_->n_tokens(), windows_per_epoch_, options_.seq_len + 1,
                     options_.split == Split::training ? "training" : "validation",
                     options_.shuffle ? fmt::format("shuffled with seed {}", options_.seed) : "in order");
}

}  // namespace dsv3::data
