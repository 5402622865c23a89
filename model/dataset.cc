#include "model/dataset.h"

#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/dataset_rng.h"
#include "nlohmann/json.hpp"
#include "protocols/check.h"
#include "protocols/file_util.h"
#include "protocols/status_macros.h"

namespace fedfm::model {
namespace {

// Reports bad rows: an error, or a warning when skip_bad_rows.
class BadRows {
 public:
  BadRows(std::string name, const ReadOptions& options, std::vector<std::string>* warnings)
      : name_(std::move(name)), skip_(options.skip_bad_rows), warnings_(warnings) {}

  // OK (and a warning) when skipping, else the error.
  absl::Status Report(size_t line, const std::string& why) {
    std::string message = absl::StrCat(name_, ":", line, ": ", why);
    if (!skip_) return absl::InvalidArgumentError(message);
    warnings_->push_back(std::move(message));
    return absl::OkStatus();
  }

  std::string Where(size_t line) const { return absl::StrCat(name_, ":", line); }

 private:
  std::string name_;
  bool skip_;
  std::vector<std::string>* warnings_;
};

// Iterates the lines of `data` (without "\n" or a trailing "\r"), 1-based.
class LineReader {
 public:
  explicit LineReader(const std::string& data) : data_(data) {}
  bool Next(std::string_view& line, size_t& number) {
    if (pos_ >= data_.size()) return false;
    size_t end = data_.find('\n', pos_);
    if (end == std::string::npos) end = data_.size();
    line = std::string_view(data_).substr(pos_, end - pos_);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos_ = end + 1;
    number = ++line_;
    return true;
  }

 private:
  const std::string& data_;
  size_t pos_ = 0;
  size_t line_ = 0;
};

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::optional<long long> ParseInteger(const std::string& s) {
  long long value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty()) return std::nullopt;
  return value;
}

// Label strings -> ids, fixed by ReadOptions::label_names or discovered.
class LabelMap {
 public:
  explicit LabelMap(const std::vector<std::string>& fixed) : fixed_(fixed) {
    for (size_t i = 0; i < fixed_.size(); ++i) index_.emplace(fixed_[i], static_cast<int32_t>(i));
  }

  // Empty when `label` is acceptable, else why not.
  std::string Check(const std::string& label) const {
    if (label.empty()) return "empty label";
    if (fixed_.empty() || index_.count(label) > 0) return "";
    return absl::StrCat("unknown label \"", label, "\"; expected one of ", absl::StrJoin(fixed_, ", "));
  }

  // Assigns the ids of `raw` (one label per row) into rows[i].label.
  std::vector<std::string> Assign(const std::vector<std::string>& raw,
                                  std::vector<LabeledText>& rows) const {
    std::vector<std::string> names = fixed_;
    std::map<std::string, int32_t> index(index_.begin(), index_.end());
    if (names.empty()) {
      std::vector<std::string> distinct(raw.begin(), raw.end());
      std::sort(distinct.begin(), distinct.end());
      distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
      bool all_integers = std::all_of(distinct.begin(), distinct.end(),
                                      [](const std::string& s) { return ParseInteger(s).has_value(); });
      if (all_integers) {
        std::stable_sort(distinct.begin(), distinct.end(), [](const std::string& a, const std::string& b) {
          return *ParseInteger(a) < *ParseInteger(b);
        });
      }
      names = distinct;
      for (size_t i = 0; i < names.size(); ++i) index[names[i]] = static_cast<int32_t>(i);
    }
    for (size_t i = 0; i < rows.size(); ++i) rows[i].label = index.at(raw[i]);
    return names;
  }

 private:
  std::vector<std::string> fixed_;
  std::unordered_map<std::string, int32_t> index_;
};

// One record of delimited text with CSV quoting: a field starting with '"'
// runs to the next lone '"' ("" inside is one quote, line breaks allowed);
// other fields run to the delimiter or the end of the line, quotes literal.
class RecordReader {
 public:
  RecordReader(const std::string& data, char delimiter) : data_(data), delimiter_(delimiter) {}

  bool AtEnd() const { return pos_ >= data_.size(); }
  size_t line() const { return line_; }  // line where the next record starts

  // Reads the next record into `fields`. False with `error` when malformed;
  // reading then resumes on the line after the record's first line.
  bool Next(std::vector<std::string>& fields, std::string& error) {
    fields.clear();
    const size_t start_pos = pos_;
    const size_t start_line = line_;
    std::string field;
    const size_t n = data_.size();
    while (true) {
      field.clear();
      if (pos_ < n && data_[pos_] == '"') {
        ++pos_;
        bool closed = false;
        while (pos_ < n) {
          char c = data_[pos_];
          if (c == '"') {
            if (pos_ + 1 < n && data_[pos_ + 1] == '"') {
              field.push_back('"');
              pos_ += 2;
              continue;
            }
            ++pos_;
            closed = true;
            break;
          }
          if (c == '\n') ++line_;
          field.push_back(c);
          ++pos_;
        }
        if (!closed) return Fail(start_pos, start_line, "unterminated quoted field", error);
        if (pos_ < n && data_[pos_] != delimiter_ && data_[pos_] != '\n' && data_[pos_] != '\r') {
          return Fail(start_pos, start_line,
                      absl::StrCat("unexpected character '", std::string(1, data_[pos_]),
                                   "' after a closing quote (quotes inside a quoted field are "
                                   "written \"\")"),
                      error);
        }
      } else {
        while (pos_ < n && data_[pos_] != delimiter_ && data_[pos_] != '\n') {
          field.push_back(data_[pos_++]);
        }
        if (!field.empty() && field.back() == '\r' && (pos_ >= n || data_[pos_] == '\n')) {
          field.pop_back();
        }
      }
      fields.push_back(field);
      if (pos_ < n && data_[pos_] == delimiter_) {
        ++pos_;
        continue;
      }
      if (pos_ < n && data_[pos_] == '\r') ++pos_;
      if (pos_ < n && data_[pos_] == '\n') {
        ++pos_;
        ++line_;
      }
      return true;
    }
  }

 private:
  bool Fail(size_t start_pos, size_t start_line, const std::string& why, std::string& error) {
    error = why;
    size_t end = data_.find('\n', start_pos);
    pos_ = end == std::string::npos ? data_.size() : end + 1;
    line_ = start_line + 1;
    return false;
  }

  const std::string& data_;
  char delimiter_;
  size_t pos_ = 0;
  size_t line_ = 1;
};

bool IsBlankRecord(const std::vector<std::string>& fields) {
  return fields.size() == 1 && fields[0].empty();
}

bool ReachedMax(const ReadOptions& options, size_t rows) {
  return options.max_rows > 0 && rows >= options.max_rows;
}

}  // namespace

absl::StatusOr<std::string> ReadMaybeGzip(const std::filesystem::path& path) {
  FEDFM_ASSIGN_OR_RETURN(std::string data, protocols::ReadFileToString(path));
  if (data.size() < 2 || static_cast<unsigned char>(data[0]) != 0x1F ||
      static_cast<unsigned char>(data[1]) != 0x8B) {
    return data;
  }
  std::string out;
  z_stream stream{};
  // 16 + MAX_WBITS: gzip wrapper.
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) {
    return absl::InternalError(absl::StrCat(path.string(), ": cannot start gzip decoder"));
  }
  stream.next_in = reinterpret_cast<Bytef*>(data.data());
  stream.avail_in = static_cast<uInt>(data.size());
  char buffer[1 << 16];
  int result = Z_OK;
  while (true) {
    stream.next_out = reinterpret_cast<Bytef*>(buffer);
    stream.avail_out = sizeof(buffer);
    result = inflate(&stream, Z_NO_FLUSH);
    out.append(buffer, sizeof(buffer) - stream.avail_out);
    if (result == Z_STREAM_END) {
      // Concatenated gzip members continue the same file.
      if (stream.avail_in == 0) break;
      if (inflateReset(&stream) != Z_OK) break;
      continue;
    }
    if (result != Z_OK) break;
    if (stream.avail_in == 0 && stream.avail_out != 0) {
      result = Z_DATA_ERROR;  // input ended inside a member
      break;
    }
  }
  inflateEnd(&stream);
  if (result != Z_STREAM_END) {
    return absl::InvalidArgumentError(absl::StrCat(
        path.string(), ": corrupt or truncated gzip data after ", out.size(), " bytes"));
  }
  return out;
}

absl::StatusOr<GroupedTexts> ReadPlainText(const std::filesystem::path& path) {
  FEDFM_ASSIGN_OR_RETURN(std::string text, protocols::ReadFileToString(path));
  GroupedTexts out;
  out.groups.push_back({"", std::move(text), 1});
  return out;
}

absl::StatusOr<GroupedTexts> SplitShakespeareBySpeaker(const std::string& text,
                                                       const std::string& source_name,
                                                       const ReadOptions& options) {
  GroupedTexts out;
  BadRows bad(source_name, options, &out.warnings);
  std::unordered_map<std::string, size_t> group_index;
  LineReader lines(text);
  std::string_view line;
  size_t number = 0;
  bool in_block = false;
  GroupedText* current = nullptr;  // null inside a skipped block
  size_t speeches = 0;
  while (lines.Next(line, number)) {
    if (line.empty()) {
      if (current != nullptr) current->text += "\n";
      in_block = false;
      current = nullptr;
      continue;
    }
    if (in_block) {
      if (current != nullptr) {
        current->text.append(line);
        current->text += "\n";
      }
      continue;
    }
    in_block = true;
    if (ReachedMax(options, speeches)) break;
    if (line.size() < 2 || line.back() != ':') {
      FEDFM_RETURN_IF_ERROR(bad.Report(
          number, absl::StrCat("expected a speaker line like \"ROMEO:\" after an empty line, got \"",
                               std::string(line.substr(0, 60)), "\"")));
      continue;
    }
    std::string speaker(line.substr(0, line.size() - 1));
    auto [it, inserted] = group_index.emplace(speaker, out.groups.size());
    if (inserted) out.groups.push_back({speaker, "", 0});
    current = &out.groups[it->second];
    ++current->num_parts;
    ++speeches;
    current->text.append(line);
    current->text += "\n";
  }
  // A speech that ends the file gets its closing empty line too.
  if (current != nullptr) current->text += "\n";
  return out;
}

absl::StatusOr<GroupedTexts> ReadShakespeareBySpeaker(const std::filesystem::path& path,
                                                      const ReadOptions& options) {
  FEDFM_ASSIGN_OR_RETURN(std::string text, protocols::ReadFileToString(path));
  return SplitShakespeareBySpeaker(text, path.string(), options);
}

absl::StatusOr<LabeledTexts> ReadLabeledTsv(const std::filesystem::path& path,
                                            const ReadOptions& options) {
  FEDFM_ASSIGN_OR_RETURN(std::string data, ReadMaybeGzip(path));
  LabeledTexts out;
  BadRows bad(path.string(), options, &out.warnings);
  LabelMap labels(options.label_names);
  std::vector<std::string> raw_labels;
  LineReader lines(data);
  std::string_view line;
  size_t number = 0;
  bool first = true;
  while (lines.Next(line, number) && !ReachedMax(options, out.rows.size())) {
    if (line.empty()) continue;
    size_t tab = line.find('\t');
    if (first) {
      first = false;
      if (EqualsIgnoreCase(line.substr(0, tab), "label")) continue;  // header
    }
    if (tab == std::string_view::npos) {
      FEDFM_RETURN_IF_ERROR(bad.Report(number, "expected label<TAB>text"));
      continue;
    }
    std::string label(line.substr(0, tab));
    std::string text(line.substr(tab + 1));
    std::string why = labels.Check(label);
    if (why.empty() && text.empty()) why = "empty text after label<TAB>";
    if (!why.empty()) {
      FEDFM_RETURN_IF_ERROR(bad.Report(number, why));
      continue;
    }
    raw_labels.push_back(std::move(label));
    out.rows.push_back({std::move(text), -1, "", bad.Where(number)});
  }
  out.label_names = labels.Assign(raw_labels, out.rows);
  return out;
}

absl::StatusOr<LabeledTexts> ReadLabeledCsv(const std::filesystem::path& path,
                                            const ReadOptions& options) {
  FEDFM_ASSIGN_OR_RETURN(std::string data, ReadMaybeGzip(path));
  LabeledTexts out;
  BadRows bad(path.string(), options, &out.warnings);
  LabelMap labels(options.label_names);
  std::vector<std::string> raw_labels;
  RecordReader records(data, ',');
  std::vector<std::string> fields;
  std::string error;
  bool first = true;
  while (!records.AtEnd() && !ReachedMax(options, out.rows.size())) {
    const size_t number = records.line();
    if (!records.Next(fields, error)) {
      FEDFM_RETURN_IF_ERROR(bad.Report(number, error));
      continue;
    }
    if (IsBlankRecord(fields)) continue;
    if (first) {
      first = false;
      if (EqualsIgnoreCase(fields[0], "label") || EqualsIgnoreCase(fields[0], "class")) continue;
    }
    if (fields.size() < 2) {
      FEDFM_RETURN_IF_ERROR(bad.Report(number, "expected \"label\",\"text\"[,\"text\"...]"));
      continue;
    }
    std::string text;
    for (size_t i = 1; i < fields.size(); ++i) {
      if (fields[i].empty()) continue;
      if (!text.empty()) text += ' ';
      text += fields[i];
    }
    std::string why = labels.Check(fields[0]);
    if (why.empty() && text.empty()) why = "empty text";
    if (!why.empty()) {
      FEDFM_RETURN_IF_ERROR(bad.Report(number, why));
      continue;
    }
    raw_labels.push_back(fields[0]);
    out.rows.push_back({std::move(text), -1, "", bad.Where(number)});
  }
  out.label_names = labels.Assign(raw_labels, out.rows);
  return out;
}

absl::StatusOr<LabeledTexts> ReadSpamAssassin(const std::filesystem::path& path,
                                              const ReadOptions& options) {
  FEDFM_ASSIGN_OR_RETURN(std::string data, ReadMaybeGzip(path));
  LabeledTexts out;
  BadRows bad(path.string(), options, &out.warnings);
  LabelMap labels(options.label_names);
  std::vector<std::string> raw_labels;
  RecordReader records(data, '\t');
  std::vector<std::string> fields;
  std::string error;
  bool first = true;
  while (!records.AtEnd() && !ReachedMax(options, out.rows.size())) {
    const size_t number = records.line();
    if (!records.Next(fields, error)) {
      FEDFM_RETURN_IF_ERROR(bad.Report(number, error));
      continue;
    }
    if (IsBlankRecord(fields)) continue;
    if (first) {
      first = false;
      if (EqualsIgnoreCase(fields[0], "label")) continue;
    }
    if (fields.size() != 5) {
      FEDFM_RETURN_IF_ERROR(bad.Report(
          number, absl::StrCat("expected 5 fields label<TAB>group<TAB>id<TAB>subject<TAB>body, got ",
                               fields.size())));
      continue;
    }
    std::string why = labels.Check(fields[0]);
    if (why.empty() && fields[1].empty()) why = "empty group";
    if (why.empty() && fields[3].empty() && fields[4].empty()) why = "empty subject and body";
    if (!why.empty()) {
      FEDFM_RETURN_IF_ERROR(bad.Report(number, why));
      continue;
    }
    raw_labels.push_back(fields[0]);
    out.rows.push_back({fields[3] + "\n" + fields[4], -1, fields[1], bad.Where(number)});
  }
  out.label_names = labels.Assign(raw_labels, out.rows);
  return out;
}

absl::StatusOr<PromptResponses> ReadPromptResponseJsonl(const std::filesystem::path& path,
                                                        const ReadOptions& options) {
  FEDFM_ASSIGN_OR_RETURN(std::string data, ReadMaybeGzip(path));
  PromptResponses out;
  BadRows bad(path.string(), options, &out.warnings);
  LineReader lines(data);
  std::string_view line;
  size_t number = 0;
  while (lines.Next(line, number) && !ReachedMax(options, out.rows.size())) {
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    nlohmann::json row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (row.is_discarded() || !row.is_object()) {
      FEDFM_RETURN_IF_ERROR(bad.Report(number, "expected a JSON object"));
      continue;
    }
    auto prompt = row.find("prompt");
    auto response = row.find("response");
    if (prompt == row.end() || !prompt->is_string() || response == row.end() ||
        !response->is_string()) {
      FEDFM_RETURN_IF_ERROR(bad.Report(number, "expected string fields \"prompt\" and \"response\""));
      continue;
    }
    if (response->get_ref<const std::string&>().empty()) {
      FEDFM_RETURN_IF_ERROR(bad.Report(number, "empty \"response\""));
      continue;
    }
    std::string group;
    auto group_field = row.find("group");
    if (group_field != row.end()) {
      if (!group_field->is_string()) {
        FEDFM_RETURN_IF_ERROR(bad.Report(number, "\"group\" must be a string"));
        continue;
      }
      group = group_field->get<std::string>();
    }
    out.rows.push_back({prompt->get<std::string>(), response->get<std::string>(), std::move(group),
                        bad.Where(number)});
  }
  return out;
}

std::vector<Example> MakeLmWindows(std::span<const int32_t> ids, const WindowOptions& options,
                                   const std::string& group) {
  FEDFM_CHECK(options.seq_len >= 1);
  FEDFM_CHECK(options.stride >= 0);
  const size_t t = static_cast<size_t>(options.seq_len);
  const size_t stride = options.stride > 0 ? static_cast<size_t>(options.stride) : t;
  const size_t n = ids.size();
  std::vector<Example> out;
  size_t start = 0;
  size_t covered = 0;  // end of the targets emitted so far
  for (; start + t + 1 <= n; start += stride) {
    Example example;
    example.tokens.assign(ids.begin() + start, ids.begin() + start + t);
    example.targets.assign(ids.begin() + start + 1, ids.begin() + start + t + 1);
    example.group = group;
    out.push_back(std::move(example));
    covered = start + t + 1;
  }
  if (options.keep_tail && start + 2 <= n && covered < n) {
    Example example;
    example.tokens.assign(ids.begin() + start, ids.end() - 1);
    example.targets.assign(ids.begin() + start + 1, ids.end());
    example.group = group;
    out.push_back(std::move(example));
  }
  return out;
}

std::vector<Example> MakeLmExamples(const Tokenizer& tokenizer, const GroupedTexts& texts,
                                    const WindowOptions& options) {
  std::vector<Example> out;
  for (const GroupedText& group : texts.groups) {
    std::vector<int32_t> ids = tokenizer.Encode(group.text, options.add_bos, options.add_eos);
    std::vector<Example> windows = MakeLmWindows(ids, options, group.group);
    out.insert(out.end(), std::make_move_iterator(windows.begin()),
               std::make_move_iterator(windows.end()));
  }
  return out;
}

std::vector<Example> MakeClassificationExamples(const Tokenizer& tokenizer,
                                                const LabeledTexts& texts,
                                                const ClassificationOptions& options) {
  FEDFM_CHECK(options.max_len >= 1);
  std::vector<Example> out;
  out.reserve(texts.rows.size());
  for (const LabeledText& row : texts.rows) {
    Example example;
    example.tokens = tokenizer.Encode(row.text, options.add_bos, options.add_eos);
    if (example.tokens.size() > static_cast<size_t>(options.max_len)) {
      example.tokens.resize(options.max_len);
    }
    example.label = row.label;
    example.group = row.group;
    out.push_back(std::move(example));
  }
  return out;
}

std::vector<Example> MakePromptResponseExamples(const Tokenizer& tokenizer,
                                                const PromptResponses& pairs,
                                                const PromptResponseOptions& options) {
  FEDFM_CHECK(options.max_len >= 2);
  const size_t budget = static_cast<size_t>(options.max_len) + 1;  // tokens incl. the last target
  std::vector<Example> out;
  out.reserve(pairs.rows.size());
  for (const PromptResponse& pair : pairs.rows) {
    std::vector<int32_t> prompt = tokenizer.Encode(pair.prompt, /*add_bos=*/true, false);
    std::vector<int32_t> response = tokenizer.Encode(pair.response, false, /*add_eos=*/true);
    if (prompt.size() + response.size() > budget) {
      const size_t prompt_reserve = std::min(prompt.size(), budget / 2);
      const size_t response_keep = std::min(response.size(), budget - prompt_reserve);
      const size_t prompt_keep = std::min(prompt.size(), budget - response_keep);
      response.resize(response_keep);
      // Drop the prompt's leading tokens, keeping a leading BOS.
      const bool has_bos = !prompt.empty() && tokenizer.bos_id() >= 0 &&
                           prompt[0] == tokenizer.bos_id() && prompt_keep >= 1;
      std::vector<int32_t> kept;
      if (has_bos) kept.push_back(prompt[0]);
      kept.insert(kept.end(), prompt.end() - (prompt_keep - kept.size()), prompt.end());
      prompt = std::move(kept);
    }
    std::vector<int32_t> sequence = prompt;
    sequence.insert(sequence.end(), response.begin(), response.end());
    if (sequence.size() < 2) continue;  // nothing to predict (see the header)
    Example example;
    example.tokens.assign(sequence.begin(), sequence.end() - 1);
    example.targets.resize(example.tokens.size());
    for (size_t t = 0; t < example.tokens.size(); ++t) {
      example.targets[t] = t + 1 >= prompt.size() ? sequence[t + 1] : kIgnoreIndex;
    }
    example.group = pair.group;
    out.push_back(std::move(example));
  }
  return out;
}

TrainEvalSplit SplitTrainEval(size_t n, double eval_fraction, uint64_t seed) {
  FEDFM_CHECK(eval_fraction >= 0.0 && eval_fraction < 1.0);
  size_t num_eval = static_cast<size_t>(std::llround(static_cast<double>(n) * eval_fraction));
  if (eval_fraction > 0.0 && n >= 2) num_eval = std::max<size_t>(num_eval, 1);
  if (n > 0) num_eval = std::min(num_eval, n - 1);
  std::vector<size_t> order = Permutation(n, seed);
  TrainEvalSplit split;
  split.eval.assign(order.begin(), order.begin() + num_eval);
  split.train.assign(order.begin() + num_eval, order.end());
  std::sort(split.eval.begin(), split.eval.end());
  std::sort(split.train.begin(), split.train.end());
  return split;
}

Batch MakeBatch(std::span<const Example> examples, std::span<const size_t> indices,
                int32_t pad_id, int32_t seq_len) {
  FEDFM_CHECK(seq_len >= 0);
  Batch batch;
  batch.batch_size = static_cast<int32_t>(indices.size());
  size_t t = static_cast<size_t>(seq_len);
  if (t == 0) {
    for (size_t index : indices) {
      FEDFM_CHECK(index < examples.size());
      t = std::max(t, examples[index].tokens.size());
    }
  }
  batch.seq_len = static_cast<int32_t>(t);
  batch.inputs.assign(indices.size() * t, pad_id);
  batch.targets.assign(indices.size() * t, kIgnoreIndex);
  batch.lengths.resize(indices.size());
  batch.labels.resize(indices.size());
  for (size_t b = 0; b < indices.size(); ++b) {
    FEDFM_CHECK(indices[b] < examples.size());
    const Example& example = examples[indices[b]];
    const size_t length = std::min(t, example.tokens.size());
    std::copy_n(example.tokens.begin(), length, batch.inputs.begin() + b * t);
    if (!example.targets.empty()) {
      FEDFM_CHECK_MSG(example.targets.size() == example.tokens.size(),
                      "Example.targets must be empty or as long as Example.tokens");
      std::copy_n(example.targets.begin(), length, batch.targets.begin() + b * t);
    }
    batch.lengths[b] = static_cast<int32_t>(length);
    batch.labels[b] = example.label;
  }
  return batch;
}

std::vector<std::vector<size_t>> MakeBatchOrder(size_t n, size_t batch_size, uint64_t seed,
                                                bool drop_last) {
  FEDFM_CHECK(batch_size > 0);
  std::vector<size_t> order = Permutation(n, seed);
  std::vector<std::vector<size_t>> batches;
  for (size_t start = 0; start < n; start += batch_size) {
    size_t end = std::min(n, start + batch_size);
    if (drop_last && end - start < batch_size) break;
    batches.emplace_back(order.begin() + start, order.begin() + end);
  }
  return batches;
}

}  // namespace fedfm::model
