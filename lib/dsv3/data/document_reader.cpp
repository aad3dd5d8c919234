#include "dsv3/data/document_reader.hpp"

#include "dsv3/core/error.hpp"
#include "dsv3/data/utf8.hpp"

#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <optional>

namespace dsv3::data {

namespace {

// ---- file contents -----------------------------------------------------------------------------------------

// The bytes of one input file: mapped for a plain file (only the pages a byte range touches are read),
// decompressed into memory for a gzip file.
class FileContent {
 public:
  explicit FileContent(const InputFile& file) : path_(file.path.string()) {
    if (file.gzip) {
      decompress();
    } else {
      map();
    }
  }
  FileContent(const FileContent&) = delete;
  FileContent& operator=(const FileContent&) = delete;
  ~FileContent() {
    if (mapping_ != nullptr) munmap(mapping_, mapped_bytes_);
  }

  std::string_view view() const { return view_; }

 private:
  void map() {
    const int descriptor = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (descriptor < 0) fail("{}: cannot open: {}", path_, std::strerror(errno));
    struct stat status {};
    if (fstat(descriptor, &status) != 0) {
      const int error = errno;
      ::close(descriptor);
      fail("{}: cannot stat: {}", path_, std::strerror(error));
    }
    mapped_bytes_ = static_cast<std::size_t>(status.st_size);
    if (mapped_bytes_ > 0) {
      mapping_ = mmap(nullptr, mapped_bytes_, PROT_READ, MAP_PRIVATE, descriptor, 0);
      if (mapping_ == MAP_FAILED) {
        const int error = errno;
        mapping_ = nullptr;
        ::close(descriptor);
        fail("{}: cannot map into memory: {}", path_, std::strerror(error));
      }
      madvise(mapping_, mapped_bytes_, MADV_SEQUENTIAL);
      view_ = std::string_view(static_cast<const char*>(mapping_), mapped_bytes_);
    }
    ::close(descriptor);
  }

  void decompress() {
    gzFile stream = gzopen(path_.c_str(), "rb");
    if (stream == nullptr) fail("{}: cannot open: {}", path_, std::strerror(errno));
    gzbuffer(stream, 1 << 18);
    constexpr std::size_t kChunk = std::size_t{1} << 20;
    for (;;) {
      const std::size_t used = decompressed_.size();
      decompressed_.resize(used + kChunk);
      const int read = gzread(stream, decompressed_.data() + used, static_cast<unsigned>(kChunk));
      if (read < 0) {
        int code = 0;
        const std::string reason = gzerror(stream, &code);
        gzclose(stream);
        fail("{}: corrupt gzip data: {}", path_, reason);
      }
      decompressed_.resize(used + static_cast<std::size_t>(read));
      if (read == 0) break;
    }
    // A stream cut short reads as a clean end of data; only closing tells.
    if (const int status = gzclose(stream); status != Z_OK) {
      fail(
          "{}: corrupt gzip data: {}", path_,
          status == Z_BUF_ERROR ? "the file ends in the middle of the stream" : "zlib error " + std::to_string(status));
    }
    view_ = decompressed_;
  }

  std::string path_;
  void* mapping_ = nullptr;
  std::size_t mapped_bytes_ = 0;
  std::string decompressed_;
  std::string_view view_;
};

// ---- lines -------------------------------------------------------------------------------------------------

struct Line {
  std::size_t begin;
  std::size_t end;   // before the newline (and a '\r' before it)
  std::size_t next;  // after the newline
};

Line line_at(std::string_view content, std::size_t begin) {
  const std::size_t newline = content.find('\n', begin);
  Line line{begin, newline == std::string_view::npos ? content.size() : newline, 0};
  line.next = newline == std::string_view::npos ? content.size() : newline + 1;
  if (line.end > begin && content[line.end - 1] == '\r') --line.end;
  return line;
}

std::string_view text_of(std::string_view content, const Line& line) {
  return content.substr(line.begin, line.end - line.begin);
}

bool is_blank(std::string_view text) { return text.find_first_not_of(" \t\r") == std::string_view::npos; }

// Line numbers are only needed for error messages, so they are counted then, from the start of the file.
std::int64_t line_number(std::string_view content, std::size_t offset) {
  return 1 + std::count(content.begin(), content.begin() + static_cast<std::ptrdiff_t>(offset), '\n');
}

// ---- the three layouts -------------------------------------------------------------------------------------

// Checks and hands over the documents of one file, turning every error into "<file>:<line>: <what>".
class DocumentSink {
 public:
  DocumentSink(const InputFile& file, std::string_view content, const std::function<void(const Document&)>& visit)
      : file_(file), content_(content), visit_(visit) {}

  [[noreturn]] void fail_at(std::size_t offset, std::string_view what) const {
    fail("{}:{}: {}", file_.path.string(), line_number(content_, offset), what);
  }

  void check_utf8(std::string_view text, std::size_t offset) const {
    if (const std::optional<std::size_t> invalid = utf8::find_invalid(text)) {
      fail_at(offset + *invalid, fmt::format("invalid UTF-8 (byte 0x{:02x} at byte offset {} of the file)",
                                             static_cast<unsigned char>(text[*invalid]), offset + *invalid));
    }
  }

  // `text` is already valid UTF-8. An empty document is counted unless `count_if_empty` is false.
  void emit(std::string_view text, std::size_t offset, bool count_if_empty = true) {
    if (text.empty()) {
      if (count_if_empty) ++counts_.empty_documents;
      return;
    }
    try {
      visit_(Document{text, static_cast<std::int64_t>(offset)});
    } catch (const std::exception& error) {
      fail_at(offset, fmt::format("in the document starting here: {}", error.what()));
    }
    ++counts_.documents;
  }

  const DocumentCounts& counts() const { return counts_; }

 private:
  const InputFile& file_;
  std::string_view content_;
  const std::function<void(const Document&)>& visit_;
  DocumentCounts counts_;
};

// Documents of a text file ended by separator lines: each begins at the start of the file or just after a
// separator line; the ones beginning in [begin, end) are read.
void read_separated_text(std::string_view content, std::size_t begin, std::size_t end, const TextSeparator& separator,
                         DocumentSink& sink) {
  const auto is_separator = [&](const Line& line) {
    const std::string_view text = text_of(content, line);
    return separator.kind == TextSeparator::Kind::line ? text == separator.line : is_blank(text);
  };
  std::size_t start = 0;
  if (begin > 0) {
    // The first separator line that ends at or after `begin`, looking from the line that holds byte begin - 1.
    const std::size_t newline_before = begin >= 2 ? content.rfind('\n', begin - 2) : std::string_view::npos;
    std::size_t position = newline_before == std::string_view::npos ? 0 : newline_before + 1;
    start = content.size();
    while (position < end && position < content.size()) {
      const Line line = line_at(content, position);
      if (is_separator(line)) {
        start = line.next;
        break;
      }
      position = line.next;
    }
  }
  // In blank-line mode a run of blank lines is one paragraph break, not a series of empty documents.
  const bool count_empty = separator.kind == TextSeparator::Kind::line;
  while (start < end && start < content.size()) {
    std::size_t position = start;
    std::optional<Line> separator_line;
    while (position < content.size()) {
      const Line line = line_at(content, position);
      if (is_separator(line)) {
        separator_line = line;
        break;
      }
      position = line.next;
    }
    std::string_view text = content.substr(start, position - start);
    if (text.ends_with('\n')) text.remove_suffix(1);
    if (text.ends_with('\r')) text.remove_suffix(1);
    sink.check_utf8(text, start);
    sink.emit(text, start, count_empty);
    if (!separator_line) break;
    start = separator_line->next;
  }
}

// One JSON object per line; a line belongs to the range holding its first byte; blank lines are skipped.
void read_jsonl(std::string_view content, std::size_t begin, std::size_t end, const std::string& field,
                DocumentSink& sink) {
  std::size_t position = begin;
  if (begin > 0 && content[begin - 1] != '\n') {
    const std::size_t newline = content.find('\n', begin);
    position = newline == std::string_view::npos ? content.size() : newline + 1;
  }
  for (; position < end && position < content.size();) {
    const Line line = line_at(content, position);
    const std::string_view text = text_of(content, line);
    position = line.next;
    if (is_blank(text)) continue;
    sink.check_utf8(text, line.begin);
    nlohmann::json object;
    try {
      object = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& error) {
      sink.fail_at(line.begin, fmt::format("invalid JSON: {}", error.what()));
    }
    const auto value = object.is_object() ? object.find(field) : object.end();
    if (!object.is_object() || value == object.end() || !value->is_string()) {
      sink.fail_at(line.begin, fmt::format("no string field \"{}\" in this JSON line (choose the field with "
                                           "--json-text-field)",
                                           field));
    }
    const std::string& document = value->get_ref<const std::string&>();
    sink.emit(document, line.begin);
  }
}

// ---- inputs ------------------------------------------------------------------------------------------------

InputFile resolve(const std::filesystem::path& path, const DocumentReaderOptions& options) {
  InputFile file;
  file.path = path;
  file.gzip = path.extension() == ".gz";
  const std::filesystem::path inner = file.gzip ? path.stem() : path;
  file.format = options.format;
  if (file.format == InputFormat::automatic) {
    file.format =
        inner.extension() == ".jsonl" || inner.extension() == ".json" ? InputFormat::jsonl : InputFormat::text;
  }
  const bool one_document =
      file.format == InputFormat::text && options.text_separator.kind == TextSeparator::Kind::whole_file;
  file.splittable = !file.gzip && !one_document;
  file.size = static_cast<std::int64_t>(std::filesystem::file_size(path));
  return file;
}

bool has_glob_characters(const std::string& pattern) { return pattern.find_first_of("*?[") != std::string::npos; }

std::vector<std::filesystem::path> files_under(const std::filesystem::path& directory) {
  std::vector<std::filesystem::path> files;
  for (auto entry = std::filesystem::recursive_directory_iterator(directory);
       entry != std::filesystem::recursive_directory_iterator(); ++entry) {
    if (entry->path().filename().string().starts_with('.')) {
      if (entry->is_directory()) entry.disable_recursion_pending();
      continue;
    }
    if (entry->is_regular_file()) files.push_back(entry->path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::filesystem::path> glob_files(const std::string& pattern) {
  glob_t matches{};
  const int status = glob(pattern.c_str(), GLOB_ERR, nullptr, &matches);
  std::vector<std::filesystem::path> files;
  if (status == 0) {
    for (std::size_t i = 0; i < matches.gl_pathc; ++i) {
      if (std::filesystem::is_regular_file(matches.gl_pathv[i])) files.emplace_back(matches.gl_pathv[i]);
    }
  }
  globfree(&matches);
  DSV3_CHECK(status == 0 || status == GLOB_NOMATCH, "input pattern '{}': cannot read a directory it names", pattern);
  return files;  // glob sorts its matches
}

}  // namespace

// ---- public functions --------------------------------------------------------------------------------------

TextSeparator TextSeparator::parse(std::string_view spec) {
  if (spec == "file") return {Kind::whole_file, {}};
  if (spec == "blank") return {Kind::blank_lines, {}};
  if (spec.starts_with("line=")) return {Kind::line, std::string(spec.substr(5))};
  fail(
      "text separator '{}': expected 'file' (one document per file), 'blank' (documents separated by blank lines) "
      "or 'line=<text>' (documents separated by a line equal to <text>, e.g. line=% for fortune files)",
      spec);
}

std::string TextSeparator::describe() const {
  switch (kind) {
    case Kind::whole_file:
      return "file";
    case Kind::blank_lines:
      return "blank";
    case Kind::line:
      return "line=" + line;
  }
  return {};
}

std::vector<InputFile> expand_inputs(std::span<const std::string> patterns, const DocumentReaderOptions& options) {
  std::vector<InputFile> inputs;
  for (const std::string& pattern : patterns) {
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(pattern)) {
      files = files_under(pattern);
    } else if (std::filesystem::is_regular_file(pattern)) {
      files = {pattern};
    } else if (has_glob_characters(pattern)) {
      files = glob_files(pattern);
    }
    DSV3_CHECK(!files.empty(), "input '{}': no such file, or no file in it", pattern);
    for (const auto& path : files) inputs.push_back(resolve(path, options));
  }
  return inputs;
}

DocumentCounts read_documents(const InputFile& file, ByteRange range, const DocumentReaderOptions& options,
                              const std::function<void(const Document&)>& visit) {
  DSV3_CHECK(file.splittable || range.whole(), "{}: this file can only be read whole (gzip, or one document per file)",
             file.path.string());
  const FileContent content(file);
  const std::string_view bytes = content.view();
  const auto begin = static_cast<std::size_t>(std::clamp<std::int64_t>(range.begin, 0, std::ssize(bytes)));
  const auto end = static_cast<std::size_t>(std::clamp<std::int64_t>(range.end, 0, std::ssize(bytes)));
  DocumentSink sink(file, bytes, visit);
  if (file.format == InputFormat::jsonl) {
    read_jsonl(bytes, begin, end, options.json_text_field, sink);
  } else if (options.text_separator.kind == TextSeparator::Kind::whole_file) {
    sink.check_utf8(bytes, 0);
    sink.emit(bytes, 0);
  } else {
    read_separated_text(bytes, begin, end, options.text_separator, sink);
  }
  return sink.counts();
}

}  // namespace dsv3::data
