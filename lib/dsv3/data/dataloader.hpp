// The data loader: torchtitan's packing (REFERENCE.md §3) read from a token dataset, or from text/JSONL
// tokenized when the loader is made (convenient for small corpora; preprocess large ones with dsv3_preprocess).
//
// Windows. The packed stream (each document as BOS, tokens, EOS, concatenated) is cut into windows of
// seq_len + 1 tokens, window k = stream[k(S+1), (k+1)(S+1)); the tail shorter than a window is left out, so every
// epoch holds the same windows. A window gives inputs = window[:-1], labels = window[1:], positions 0..S-1, and
// document ids for the document-causal mask: the id of input position i is the number of EOS tokens among
// inputs 0..i-1 of its window (an EOS belongs to the document it ends; ids restart at 0 in each window).
//
// Splits. With validation_fraction f > 0 the last round(f·n) of the n windows form the validation split and the
// others the training split; with f = 0 the training split is every window (what a loader over a separate
// validation dataset uses).
//
// Order and sharding. All data-parallel ranks walk one sequence of windows: epoch e visits the split's windows in
// a permutation seeded by (seed, e), or in order without shuffle; each global batch takes the next
// dp_size·batch_size windows, and rank r the r-th block of batch_size of them. So the ranks' batches never overlap,
// together they are what one rank with batch_size·dp_size would read, and the state (epoch, position, seed) is
// the same on every rank. A batch that runs past the end of an epoch continues into the next one.
#pragma once

#include "dsv3/data/document_encoder.hpp"
#include "dsv3/data/document_reader.hpp"
#include "dsv3/io/token_dataset.hpp"
#include "dsv3/tensor/tensor.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dsv3::data {

enum class Split { training, validation };

struct DataLoaderOptions {
  // One token dataset (*.h5, *.hdf5), or text/JSONL inputs: files, directories, globs.
  std::vector<std::string> inputs;
  DocumentReaderOptions text;   // how text inputs split into documents
  std::int64_t batch_size = 1;  // sequences per data-parallel rank
  std::int64_t seq_len = 2048;
  int dp_rank = 0;
  int dp_size = 1;
  std::uint64_t seed = 0;
  bool shuffle = true;
  double validation_fraction = 0.0;
  Split split = Split::training;
};

// Where a loader is in its sequence of windows; equal on every data-parallel rank. Saved in checkpoints.
struct DataLoaderState {
  std::int64_t epoch = 0;
  std::int64_t position = 0;  // windows of this epoch already taken, by all data-parallel ranks together
  std::uint64_t seed = 0;
  std::int64_t windows_per_epoch = 0;  // of the split: restoring a state onto other data is an error

  bool operator==(const DataLoaderState&) const = default;
};

struct Batch {
  Tensor inputs;        // i32 [batch_size, seq_len]
  Tensor labels;        // i32 [batch_size, seq_len]: inputs shifted by one
  Tensor document_ids;  // i32 [batch_size, seq_len]
  Tensor positions;     // i32 [seq_len]
};

class TokenSource;

class DataLoader {
 public:
  // `encoder` is the run's tokenizer: required for text inputs; for a token dataset the dataset's tokenizer must
  // be the same one (nullptr: take the dataset's tokenizer as it is).
  DataLoader(DataLoaderOptions options, const DocumentEncoder* encoder);
  DataLoader(DataLoader&&) noexcept;
  DataLoader& operator=(DataLoader&&) noexcept;
  ~DataLoader();

  // This rank's next batch.
  Batch next();

  DataLoaderState state() const;
  // Continues exactly where `state` was taken (seed included); an error when it belongs to other data.
  void restore(const DataLoaderState& state);

  std::int64_t windows_per_epoch() const { return windows_per_epoch_; }
  const io::TokenizerIdentity& tokenizer() const;
  // One line for the log: source, tokens, windows per epoch, split, order.
  std::string describe() const;

 private:
  void read_window(std::int64_t global_index, std::int32_t* inputs, std::int32_t* labels, std::int32_t* document_ids);

  DataLoaderOptions options_;
  std::unique_ptr<TokenSource> source_;
  std::int64_t first_window_ = 0;  // of the split
  std::int64_t windows_per_epoch_ = 0;
  std::int64_t cursor_ = 0;  // windows taken since epoch 0, by all ranks together
  std::vector<std::int32_t> window_;
};

}  // namespace dsv3::data
