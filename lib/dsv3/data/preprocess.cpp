#include "dsv3/data/preprocess.hpp"

#include "dsv3/core/error.hpp"
#include "dsv3/core/timer.hpp"
#include "dsv3/io/collective.hpp"
#include "dsv3/io/token_dataset.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <limits>

namespace dsv3::data {

namespace {

// ---- sharing the work --------------------------------------------------------------------------------------

void broadcast_from_rank_0(std::string& text, MPI_Comm comm) {
  auto length = static_cast<std::int64_t>(text.size());
  MPI_Bcast(&length, 1, MPI_INT64_T, 0, comm);
  DSV3_CHECK(length <= INT_MAX, "dsv3_preprocess: {} bytes to broadcast, more than MPI takes at once", length);
  text.resize(static_cast<std::size_t>(length));
  MPI_Bcast(text.data(), static_cast<int>(length), MPI_CHAR, 0, comm);
}

// Rank 0 expands the patterns, so that every rank works on the same list even if the file system changes
// under the job.
std::vector<InputFile> shared_input_list(const std::vector<std::string>& patterns, const DocumentReaderOptions& reader,
                                         MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  std::string serialized;
  io::agree_on_failure(comm, [&] {
    if (rank != 0) return;
    nlohmann::json list = nlohmann::json::array();
    for (const InputFile& file : expand_inputs(patterns, reader)) {
      list.push_back({file.path.string(), static_cast<int>(file.format), file.gzip, file.splittable, file.size});
    }
    serialized = list.dump();
  });
  broadcast_from_rank_0(serialized, comm);
  std::vector<InputFile> files;
  for (const auto& entry : nlohmann::json::parse(serialized)) {
    files.push_back({entry[0].get<std::string>(), static_cast<InputFormat>(entry[1].get<int>()), entry[2].get<bool>(),
                     entry[3].get<bool>(), entry[4].get<std::int64_t>()});
  }
  return files;
}

// A piece of the corpus one rank reads: a byte range of a splittable file, or a whole file.
struct WorkItem {
  const InputFile* file;
  ByteRange range;
  std::int64_t bytes;  // its share of the input, for progress
};

// This rank's share of the concatenated input bytes is [begin, end); the last rank's share is open-ended so
// that empty files at the very end have an owner too.
std::vector<WorkItem> work_of_rank(const std::vector<InputFile>& files, int rank, int ranks) {
  std::int64_t total = 0;
  for (const InputFile& file : files) total += file.size;
  const auto share_start = [&](int r) { return total / ranks * r + std::min<std::int64_t>(r, total % ranks); };
  const std::int64_t begin = share_start(rank);
  const std::int64_t end = rank == ranks - 1 ? std::numeric_limits<std::int64_t>::max() : share_start(rank + 1);
  std::vector<WorkItem> items;
  std::int64_t file_start = 0;
  for (const InputFile& file : files) {
    if (file.splittable) {
      const std::int64_t low = std::max(begin, file_start);
      const std::int64_t high = std::min(end, file_start + file.size);
      if (low < high) items.push_back({&file, {low - file_start, high - file_start}, high - low});
    } else if (file_start >= begin && file_start < end) {
      items.push_back({&file, ByteRange{}, file.size});
    }
    file_start += file.size;
  }
  return items;
}

// Rank 0's progress on stderr. Every rank has about the same number of bytes to read, so rank 0's fraction done
// and rate (times the number of ranks) stand for the job's.
class ProgressReport {
 public:
  ProgressReport(std::string_view task, std::int64_t bytes, int ranks, bool enabled)
      : task_(task), bytes_(bytes), ranks_(ranks), enabled_(enabled) {}

  void update(std::int64_t done) {
    if (!enabled_ || bytes_ == 0 || since_print_.seconds() < 2.0) return;
    since_print_.reset();
    const double seconds = elapsed_.seconds();
    const double fraction = static_cast<double>(done) / static_cast<double>(bytes_);
    const double rate = static_cast<double>(done) * ranks_ / 1e6 / seconds;
    const double left = fraction > 0 ? seconds * (1 - fraction) / fraction : 0;
    fmt::print(stderr, "dsv3_preprocess {}: {:5.1f}%  ~{:.2f} MB/s on {} rank(s)  ETA {:.0f} s\n", task_,
               100 * fraction, rate, ranks_, left);
    std::fflush(stderr);
  }

 private:
  std::string_view task_;
  std::int64_t bytes_;
  int ranks_;
  bool enabled_;
  Timer elapsed_;
  Timer since_print_;
};

// Reads this rank's share of `files` (see work_of_rank), giving `visit` its documents in order, with rank 0
// reporting progress. Collective: an error on any rank is thrown on all of them. Returns the counts of all ranks.
DocumentCounts read_share(const std::vector<InputFile>& files, const DocumentReaderOptions& reader,
                          std::string_view task, bool progress, MPI_Comm comm,
                          const std::function<void(const Document&)>& visit) {
  int rank = 0;
  int ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  const std::vector<WorkItem> work = work_of_rank(files, rank, ranks);
  std::int64_t my_bytes = 0;
  for (const WorkItem& item : work) my_bytes += item.bytes;
  DocumentCounts counts;
  io::agree_on_failure(comm, [&] {
    ProgressReport report(task, my_bytes, ranks, progress && rank == 0);
    std::int64_t done = 0;
    for (const WorkItem& item : work) {
      const bool partial = !item.range.whole();
      counts += read_documents(*item.file, item.range, reader, [&](const Document& document) {
        visit(document);
        if (partial) report.update(done + document.begin - item.range.begin);
      });
      done += item.bytes;
      report.update(done);
    }
  });
  std::int64_t totals[] = {counts.documents, counts.empty_documents};
  MPI_Allreduce(MPI_IN_PLACE, totals, 2, MPI_INT64_T, MPI_SUM, comm);
  DSV3_CHECK(totals[0] > 0,
             "dsv3_preprocess {}: no non-empty document in the {} input file(s) ({} empty one(s) skipped)", task,
             files.size(), totals[1]);
  return {totals[0], totals[1]};
}

std::string_view describe_format(InputFormat format) {
  switch (format) {
    case InputFormat::automatic:
      return "format by file extension";
    case InputFormat::text:
      return "text";
    case InputFormat::jsonl:
      return "JSONL";
  }
  return {};
}

// ---- word counts across ranks ------------------------------------------------------------------------------

// (count: i64, length: u32, bytes) per word, in the machine's byte order: the ranks of one job share it.
std::string serialize_word_counts(const StringMap<std::int64_t>& counts) {
  std::string out;
  for (const auto& [word, count] : counts) {
    const auto length = static_cast<std::uint32_t>(word.size());
    out.append(reinterpret_cast<const char*>(&count), sizeof count);
    out.append(reinterpret_cast<const char*>(&length), sizeof length);
    out.append(word);
  }
  return out;
}

void add_word_counts(std::string_view serialized, BpeTrainer& trainer) {
  while (!serialized.empty()) {
    std::int64_t count = 0;
    std::uint32_t length = 0;
    std::memcpy(&count, serialized.data(), sizeof count);
    std::memcpy(&length, serialized.data() + sizeof count, sizeof length);
    serialized.remove_prefix(sizeof count + sizeof length);
    trainer.add_word(serialized.substr(0, length), count);
    serialized.remove_prefix(length);
  }
}

// The concatenation of every rank's `mine`, in rank order, on rank 0 (empty elsewhere).
std::string gather_to_rank_0(const std::string& mine, MPI_Comm comm) {
  int rank = 0;
  int ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  const auto my_size = static_cast<std::int64_t>(mine.size());
  std::vector<std::int64_t> sizes(static_cast<std::size_t>(ranks));
  MPI_Gather(&my_size, 1, MPI_INT64_T, sizes.data(), 1, MPI_INT64_T, 0, comm);
  std::vector<int> counts(sizes.size());
  std::vector<int> displacements(sizes.size());
  std::int64_t total = 0;
  for (std::size_t r = 0; r < sizes.size(); ++r) {
    counts[r] = static_cast<int>(sizes[r]);
    displacements[r] = static_cast<int>(total);
    total += sizes[r];
  }
  io::agree_on_failure(comm, [&] {
    DSV3_CHECK(rank != 0 || total <= INT_MAX,
               "dsv3_preprocess train-tokenizer: the word counts take {} bytes, more than one MPI gather carries; "
               "train on a sample of the corpus",
               total);
  });
  std::string all(rank == 0 ? static_cast<std::size_t>(total) : 0, '\0');
  MPI_Gatherv(mine.data(), static_cast<int>(my_size), MPI_CHAR, all.data(), counts.data(), displacements.data(),
              MPI_CHAR, 0, comm);
  return all;
}

}  // namespace

// ---- the two commands --------------------------------------------------------------------------------------

TokenizeSummary tokenize_corpus(const TokenizeOptions& options, const DocumentEncoder& encoder, MPI_Comm comm) {
  const Timer timer;
  const std::vector<InputFile> files = shared_input_list(options.inputs, options.reader, comm);
  std::vector<std::int32_t> tokens;
  std::vector<std::int64_t> document_lengths;
  const DocumentCounts counts =
      read_share(files, options.reader, "tokenize", options.progress, comm,
                 [&](const Document& document) { document_lengths.push_back(encoder.append(document.text, tokens)); });

  TokenizeSummary summary;
  summary.files = static_cast<std::int64_t>(files.size());
  for (const InputFile& file : files) summary.input_bytes += file.size;
  summary.documents = counts.documents;
  summary.empty_documents = counts.empty_documents;
  summary.tokens = static_cast<std::int64_t>(tokens.size());
  MPI_Allreduce(MPI_IN_PLACE, &summary.tokens, 1, MPI_INT64_T, MPI_SUM, comm);
  const std::string source =
      fmt::format("dsv3_preprocess tokenize of {} file(s) from {} ({}; text documents: {}; JSON text field \"{}\")",
                  files.size(), fmt::join(options.inputs, " "), describe_format(options.reader.format),
                  options.reader.text_separator.describe(), options.reader.json_text_field);
  io::write_token_dataset(options.output, comm, {encoder.identity(), source, summary.empty_documents}, tokens,
                          document_lengths);
  summary.seconds = timer.seconds();
  return summary;
}

TrainTokenizerSummary train_tokenizer(const TrainTokenizerOptions& options, MPI_Comm comm) {
  const Timer timer;
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const std::vector<InputFile> files = shared_input_list(options.inputs, options.reader, comm);
  BpeTrainer counter(options.trainer);
  const DocumentCounts counts = read_share(files, options.reader, "train-tokenizer", options.progress, comm,
                                           [&](const Document& document) { counter.add_document(document.text); });
  const std::string all_words = gather_to_rank_0(serialize_word_counts(counter.word_counts()), comm);

  TrainTokenizerSummary summary;
  summary.files = static_cast<std::int64_t>(files.size());
  summary.documents = counts.documents;
  summary.empty_documents = counts.empty_documents;
  std::int64_t trained[] = {0, 0};  // distinct words, vocabulary size
  io::agree_on_failure(comm, [&] {
    if (rank != 0) return;
    BpeTrainer trainer(options.trainer);
    add_word_counts(all_words, trainer);
    const BpeVocabulary vocabulary = trainer.train();
    trainer.save(vocabulary, options.output);
    trained[0] = static_cast<std::int64_t>(trainer.word_counts().size());
    trained[1] = static_cast<std::int64_t>(vocabulary.tokens.size());
  });
  MPI_Bcast(trained, 2, MPI_INT64_T, 0, comm);
  summary.distinct_words = trained[0];
  summary.vocab_size = trained[1];
  summary.seconds = timer.seconds();
  return summary;
}

}  // namespace dsv3::data
