// dsv3_preprocess: text/JSONL corpora into one HDF5 token dataset (io/token_dataset.hpp), and a byte-level BPE
// tokenizer trained on a corpus, both in parallel over MPI ranks.
//
// The ranks split the input bytes evenly. A document goes to the rank whose share holds its first byte (files
// that can only be read whole, gzip or one document per file, go to the rank whose share holds their first byte),
// so each rank tokenizes a run of consecutive documents, and the ranks write their runs side by side into one
// file: the documents stay in input order, and the file is byte-identical whatever the number of ranks.
#pragma once

#include "dsv3/data/bpe_trainer.hpp"
#include "dsv3/data/document_encoder.hpp"
#include "dsv3/data/document_reader.hpp"

#include <mpi.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace dsv3::data {

struct TokenizeOptions {
  std::vector<std::string> inputs;  // files, directories, globs
  std::filesystem::path output;
  DocumentReaderOptions reader;
  bool progress = true;  // rank 0 reports MB/s and the time left on stderr
};

struct TokenizeSummary {
  std::int64_t files = 0;
  std::int64_t input_bytes = 0;  // on disk
  std::int64_t documents = 0;
  std::int64_t empty_documents = 0;  // skipped
  std::int64_t tokens = 0;           // BOS and EOS included
  double seconds = 0.0;              // on this rank
};

// Collective over `comm`; every rank returns the same counts. An error on any rank (a pattern matching nothing,
// invalid UTF-8, a JSON line without the text field, ...) is thrown on every rank, before anything is written.
TokenizeSummary tokenize_corpus(const TokenizeOptions& options, const DocumentEncoder& encoder, MPI_Comm comm);

struct TrainTokenizerOptions {
  std::vector<std::string> inputs;  // files, directories, globs
  std::filesystem::path output;     // directory for tokenizer.json and tokenizer_config.json
  DocumentReaderOptions reader;
  BpeTrainerOptions trainer;
  bool progress = true;
};

struct TrainTokenizerSummary {
  std::int64_t files = 0;
  std::int64_t documents = 0;
  std::int64_t empty_documents = 0;
  std::int64_t distinct_words = 0;  // after pre-tokenization, over the whole corpus
  std::int64_t vocab_size = 0;      // of the trained tokenizer (less than asked when the corpus runs out of pairs)
  double seconds = 0.0;             // on this rank
};

// Collective over `comm`: each rank counts the pre-tokenized words of its share of the documents; rank 0 adds up
// the counts, trains (BpeTrainer) and writes the tokenizer. The result does not depend on the number of ranks.
TrainTokenizerSummary train_tokenizer(const TrainTokenizerOptions& options, MPI_Comm comm);

}  // namespace dsv3::data
