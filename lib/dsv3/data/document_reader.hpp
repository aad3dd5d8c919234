// Corpora as documents: plain text (one document per file, or documents ended by a given separator line or by
// blank lines) and JSONL (one JSON object per line, the text in a given field), each optionally gzip-compressed.
// Shared by dsv3_preprocess and by the data loader's direct text input, so both see the same documents.
//
// A plain file can be read in byte ranges: a document belongs to the range holding its first byte, so ranges
// that partition a file give each document to exactly one of them, in file order. That is how
// dsv3_preprocess splits one large file across ranks. gzip streams cannot be entered in the middle, and a
// one-document file has nothing to split: such files are read whole.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3::data {

enum class InputFormat { automatic, text, jsonl };  // automatic: *.jsonl, *.json (and .gz of them) are JSONL

// How a plain-text file splits into documents. A separator line ends the document before it (an empty one too,
// which is skipped and counted); a trailing '\r' is ignored when lines are compared. A document's text is its
// lines without the newline of the last one; a whole-file document is the file's bytes as they are.
struct TextSeparator {
  enum class Kind { whole_file, blank_lines, line };
  Kind kind = Kind::whole_file;
  std::string line;  // Kind::line: the separator line, e.g. "%" in fortune files

  // "file", "blank" (lines of spaces and tabs only; a run of them is one separator) or "line=<text>".
  static TextSeparator parse(std::string_view spec);
  std::string describe() const;  // the spec it parses from
};

struct DocumentReaderOptions {
  InputFormat format = InputFormat::automatic;
  TextSeparator text_separator;
  std::string json_text_field = "text";
};

// One input file, its format resolved.
struct InputFile {
  std::filesystem::path path;
  InputFormat format = InputFormat::text;  // text or jsonl
  bool gzip = false;                       // by the .gz extension
  bool splittable = false;                 // can be read in byte ranges (see above)
  std::int64_t size = 0;                   // bytes on disk
};

// The files that `patterns` name: files, directories (searched recursively, hidden files skipped) and glob
// patterns, in the order given, the files of one directory or glob sorted by path. An error names a pattern
// that matches no file.
std::vector<InputFile> expand_inputs(std::span<const std::string> patterns, const DocumentReaderOptions& options);

struct Document {
  std::string_view text;  // valid UTF-8, not empty
  std::int64_t begin;     // byte offset of the document in the (decompressed) file
};

struct DocumentCounts {
  std::int64_t documents = 0;        // given to the visitor
  std::int64_t empty_documents = 0;  // skipped
  DocumentCounts& operator+=(const DocumentCounts& other) {
    documents += other.documents;
    empty_documents += other.empty_documents;
    return *this;
  }
};

struct ByteRange {
  std::int64_t begin = 0;
  std::int64_t end = std::numeric_limits<std::int64_t>::max();  // default: the whole file
  bool whole() const { return begin == 0 && end == std::numeric_limits<std::int64_t>::max(); }
};

// Gives `visit`, in file order, each non-empty document of `file` that begins in `range` (a file that is not
// splittable is only read whole). Invalid UTF-8, bad JSON, a missing or non-string text field, and errors thrown
// by `visit` come out as dsv3::Error "<file>:<line>: <what>".
DocumentCounts read_documents(const InputFile& file, ByteRange range, const DocumentReaderOptions& options,
                              const std::function<void(const Document&)>& visit);

}  // namespace dsv3::data
