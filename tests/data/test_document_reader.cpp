// Reading corpora as documents: the three text layouts, JSONL (plain and gzip), byte ranges that partition a
// file, and errors that name the file and line.
#include "data/data_testing.hpp"
#include "dsv3/data/document_reader.hpp"
#include "io/io_testing.hpp"

#include <doctest/doctest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

using namespace dsv3;
using namespace dsv3::data;
using dsv3::testing::ScratchDirectory;

namespace {

const DocumentReaderOptions& defaults() {
  static const DocumentReaderOptions options;
  return options;
}

DocumentReaderOptions separated_by(std::string_view spec) {
  DocumentReaderOptions options;
  options.text_separator = TextSeparator::parse(spec);
  return options;
}

struct Read {
  std::vector<std::string> texts;
  std::vector<std::int64_t> begins;
  DocumentCounts counts;
};

Read read(const std::filesystem::path& path, const DocumentReaderOptions& options, ByteRange range = {}) {
  const std::string pattern = path.string();
  const std::vector<InputFile> files = expand_inputs(std::span(&pattern, 1), options);
  REQUIRE(files.size() == 1);
  Read result;
  result.counts = read_documents(files.front(), range, options, [&](const Document& document) {
    result.texts.emplace_back(document.text);
    result.begins.push_back(document.begin);
  });
  return result;
}

using Texts = std::vector<std::string>;

}  // namespace

TEST_CASE("text separated by a line, fortune style") {
  ScratchDirectory scratch("reader-fortune");
  const auto path = scratch / "fortunes";
  // A leading separator makes an empty first document, "%\n%" another; the final "%" ends the last one.
  testing::write_file(path, "%\nFirst fortune.\n  Second line.\n%\n%\nSecond\r\n%\r\nThird, no newline at the end");
  const Read result = read(path, separated_by("line=%"));
  CHECK(result.texts == Texts{"First fortune.\n  Second line.", "Second", "Third, no newline at the end"});
  CHECK(result.begins == std::vector<std::int64_t>{2, 36, 47});
  CHECK(result.counts.documents == 3);
  CHECK(result.counts.empty_documents == 2);

  testing::write_file(path, "one\n%\ntwo\n%\n");
  const Read trailing = read(path, separated_by("line=%"));
  CHECK(trailing.texts == Texts{"one", "two"});
  CHECK(trailing.counts.empty_documents == 0);  // nothing after the last separator is no document
  // A line that only contains the separator text is no separator.
  testing::write_file(path, "100% sure\n%%\n");
  CHECK(read(path, separated_by("line=%")).texts == Texts{"100% sure\n%%"});
}

TEST_CASE("text separated by blank lines, and whole files") {
  ScratchDirectory scratch("reader-blank");
  const auto path = scratch / "paragraphs.txt";
  testing::write_file(path, "\n\nPara one\nstill one\n\n \t\n\nPara two\n\n");
  const Read blank = read(path, separated_by("blank"));
  CHECK(blank.texts == Texts{"Para one\nstill one", "Para two"});
  CHECK(blank.counts.empty_documents == 0);  // a run of blank lines is one break

  const Read whole = read(path, separated_by("file"));
  CHECK(whole.texts == Texts{"\n\nPara one\nstill one\n\n \t\n\nPara two\n\n"});

  testing::write_file(path, "");
  const Read empty = read(path, separated_by("file"));
  CHECK(empty.texts.empty());
  CHECK(empty.counts.empty_documents == 1);

  CHECK_ERROR_CONTAINS(TextSeparator::parse("percent"), "text separator 'percent'", "line=<text>");
  CHECK(TextSeparator::parse("line=%").describe() == "line=%");
  CHECK(TextSeparator::parse("blank").kind == TextSeparator::Kind::blank_lines);
}

TEST_CASE("byte ranges partition the documents of a file, whatever the cut points") {
  ScratchDirectory scratch("reader-ranges");
  std::mt19937 rng(7);
  std::string fortunes;
  std::string jsonl;
  std::string paragraphs;
  for (int d = 0; d < 40; ++d) {
    std::string text;
    const int lines = 1 + static_cast<int>(rng() % 3);
    for (int l = 0; l < lines; ++l)
      text += (l ? "\n" : "") + std::string(1 + rng() % 12, static_cast<char>('a' + d % 26));
    fortunes += text + (d % 7 == 3 ? "\n%\n%\n" : "\n%\n");  // some empty documents
    jsonl += "{\"text\": \"" + std::to_string(d) + "\"}\n" + (d % 5 == 0 ? "\n" : "");
    paragraphs += text + (d % 4 == 0 ? "\n\n\n" : "\n\n");
  }
  const struct {
    std::string name;
    std::string content;
    DocumentReaderOptions options;
  } cases[] = {{"fortunes", fortunes, separated_by("line=%")},
               {"corpus.jsonl", jsonl, defaults()},
               {"paragraphs", paragraphs, separated_by("blank")}};
  for (const auto& corpus : cases) {
    CAPTURE(corpus.name);
    const auto path = scratch / corpus.name;
    testing::write_file(path, corpus.content);
    const Read whole = read(path, corpus.options);
    REQUIRE(whole.counts.documents >= 40);
    const auto size = static_cast<std::int64_t>(corpus.content.size());
    // Every single cut point, then random sets of cut points.
    std::vector<std::vector<std::int64_t>> cut_sets;
    for (std::int64_t cut = 0; cut <= size; ++cut) cut_sets.push_back({cut});
    for (int trial = 0; trial < 50; ++trial) {
      std::set<std::int64_t> cuts;
      for (int k = 0; k < 5; ++k) cuts.insert(static_cast<std::int64_t>(rng() % (size + 1)));
      cut_sets.emplace_back(cuts.begin(), cuts.end());
    }
    for (const auto& cuts : cut_sets) {
      Read pieces;
      std::int64_t begin = 0;
      for (std::size_t k = 0; k <= cuts.size(); ++k) {
        const std::int64_t end = k < cuts.size() ? cuts[k] : size;
        const Read piece = read(path, corpus.options, {begin, end});
        pieces.texts.insert(pieces.texts.end(), piece.texts.begin(), piece.texts.end());
        pieces.begins.insert(pieces.begins.end(), piece.begins.begin(), piece.begins.end());
        pieces.counts += piece.counts;
        begin = end;
      }
      INFO("cut points: ", cuts.front(), cuts.size() > 1 ? " ..." : "");
      REQUIRE(pieces.texts == whole.texts);
      REQUIRE(pieces.begins == whole.begins);
      REQUIRE(pieces.counts.empty_documents == whole.counts.empty_documents);
    }
  }
}

TEST_CASE("JSONL, plain and gzip-compressed") {
  ScratchDirectory scratch("reader-jsonl");
  const std::string content =
      "{\"text\": \"Hello \\u00e9t\\u00e9\", \"id\": 1}\n\n{\"id\": 2, \"text\": \"\"}\r\n{\"body\": \"x\", \"text\": "
      "\"line\\nbreak\"}\n";
  const Texts expected = {"Hello été", "line\nbreak"};
  testing::write_file(scratch / "a.jsonl", content);
  testing::write_gzip_file(scratch / "b.jsonl.gz", content);
  const Read plain = read(scratch / "a.jsonl", defaults());
  CHECK(plain.texts == expected);
  CHECK(plain.counts.empty_documents == 1);
  const Read compressed = read(scratch / "b.jsonl.gz", defaults());
  CHECK(compressed.texts == expected);
  CHECK(compressed.begins == plain.begins);

  DocumentReaderOptions body;
  body.json_text_field = "body";
  testing::write_file(scratch / "c.jsonl", "{\"body\": \"first\"}\n{\"body\": \"second\"}\n");
  CHECK(read(scratch / "c.jsonl", body).texts == Texts{"first", "second"});

  // Format forced, whatever the extension; gzip text too.
  DocumentReaderOptions forced;
  forced.format = InputFormat::jsonl;
  testing::write_file(scratch / "d.txt", "{\"text\": \"forced\"}\n");
  CHECK(read(scratch / "d.txt", forced).texts == Texts{"forced"});
  testing::write_gzip_file(scratch / "e.txt.gz", "one\n%\ntwo\n");
  CHECK(read(scratch / "e.txt.gz", separated_by("line=%")).texts == Texts{"one", "two"});

  // A gzip file cannot be entered in the middle.
  const std::string gz_pattern = (scratch / "b.jsonl.gz").string();
  const InputFile gz = expand_inputs(std::span(&gz_pattern, 1), defaults()).front();
  CHECK(gz.gzip);
  CHECK_FALSE(gz.splittable);
  CHECK_ERROR_CONTAINS(read_documents(gz, {0, 10}, defaults(), [](const Document&) {}), "can only be read whole");
}

TEST_CASE("errors name the file and the line") {
  ScratchDirectory scratch("reader-errors");
  const auto missing_field = scratch / "missing.jsonl";
  testing::write_file(missing_field, "{\"text\": \"ok\"}\n{\"content\": \"no text\"}\n");
  CHECK_ERROR_CONTAINS(read(missing_field, defaults()), missing_field.string() + ":2: no string field \"text\"");
  const auto not_string = scratch / "number.jsonl";
  testing::write_file(not_string, "\n\n{\"text\": 5}\n");
  CHECK_ERROR_CONTAINS(read(not_string, defaults()), not_string.string() + ":3: no string field \"text\"");
  const auto bad_json = scratch / "bad.jsonl";
  testing::write_file(bad_json, "{\"text\": \"ok\"}\n{\"text\": \"unterminated}\n");
  CHECK_ERROR_CONTAINS(read(bad_json, defaults()), bad_json.string() + ":2: invalid JSON");

  const auto latin1 = scratch / "latin1.txt";
  testing::write_file(latin1, "fine\n%\nstill fine\nna\xefve\n%\n");
  CHECK_ERROR_CONTAINS(read(latin1, separated_by("line=%")),
                       latin1.string() + ":4: invalid UTF-8 (byte 0xef at byte offset 20 of the file)");
  const auto latin1_json = scratch / "latin1.jsonl";
  testing::write_file(latin1_json, "{\"text\": \"caf\xe9\"}\n");
  CHECK_ERROR_CONTAINS(read(latin1_json, defaults()), latin1_json.string() + ":1: invalid UTF-8");
  const auto latin1_gz = scratch / "latin1.jsonl.gz";
  testing::write_gzip_file(latin1_gz, "{\"text\": \"ok\"}\n{\"text\": \"caf\xe9\"}\n");
  CHECK_ERROR_CONTAINS(read(latin1_gz, defaults()), latin1_gz.string() + ":2: invalid UTF-8");

  // A truncated gzip stream.
  const auto truncated = scratch / "truncated.jsonl.gz";
  testing::write_gzip_file(truncated, std::string(10000, 'x'));
  std::filesystem::resize_file(truncated, std::filesystem::file_size(truncated) / 2);
  CHECK_ERROR_CONTAINS(read(truncated, defaults()), truncated.string() + ": corrupt gzip data");

  // Errors of the consumer come out with the document's place.
  const auto fine = scratch / "fine";
  testing::write_file(fine, "a\n%\nb\n");
  const std::string pattern = fine.string();
  const InputFile file = expand_inputs(std::span(&pattern, 1), separated_by("line=%")).front();
  CHECK_ERROR_CONTAINS(read_documents(file, {}, separated_by("line=%"),
                                      [](const Document& document) {
                                        if (document.text == "b") fail("cannot encode");
                                      }),
                       fine.string() + ":3: in the document starting here: cannot encode");
}

TEST_CASE("inputs: files, directories, globs") {
  ScratchDirectory scratch("reader-inputs");
  testing::write_file(scratch / "corpus" / "b.txt", "b");
  testing::write_file(scratch / "corpus" / "a.jsonl", "{}");
  testing::write_file(scratch / "corpus" / "sub" / "c.json.gz", "");
  testing::write_file(scratch / "corpus" / ".hidden", "h");
  testing::write_file(scratch / "corpus" / ".git" / "objects", "h");
  const DocumentReaderOptions options = separated_by("line=%");
  const std::vector<std::string> patterns = {(scratch / "corpus").string(), (scratch / "corpus" / "*.txt").string(),
                                             (scratch / "corpus" / "a.jsonl").string()};
  const std::vector<InputFile> files = expand_inputs(patterns, options);
  std::vector<std::string> names;
  for (const InputFile& file : files) names.push_back(std::filesystem::relative(file.path, scratch.path()).string());
  CHECK(names == std::vector<std::string>{"corpus/a.jsonl", "corpus/b.txt", "corpus/sub/c.json.gz", "corpus/b.txt",
                                          "corpus/a.jsonl"});
  CHECK(files[0].format == InputFormat::jsonl);
  CHECK(files[0].splittable);
  CHECK(files[1].format == InputFormat::text);
  CHECK(files[1].size == 1);
  CHECK(files[2].format == InputFormat::jsonl);
  CHECK(files[2].gzip);
  CHECK_FALSE(files[2].splittable);
  // One document per file: nothing to split.
  CHECK_FALSE(expand_inputs(std::span(patterns).subspan(1, 1), defaults()).front().splittable);

  const std::vector<std::string> missing = {(scratch / "nothing-here").string()};
  CHECK_ERROR_CONTAINS(expand_inputs(missing, options), "input '" + missing[0] + "': no such file");
  const std::vector<std::string> no_match = {(scratch / "corpus" / "*.parquet").string()};
  CHECK_ERROR_CONTAINS(expand_inputs(no_match, options), "input '" + no_match[0] + "'");
}
