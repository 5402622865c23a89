// Datasets: reading text and labelled files, turning them into token
// examples, splitting and batching. Torch-free: batches are plain int32
// buffers that the trainer wraps into tensors.
//
// Flow:  file --Read*()--> texts (with labels / groups / file:line)
//             --Make*Examples(tokenizer)--> std::vector<Example>
//             --SplitTrainEval / partition.h--> index lists
//             --MakeBatch--> Batch (contiguous [B, T] buffers)
//
// Bad rows: every reader checks each row; by default the first bad row is an
// InvalidArgument error "path:line: what was expected"; with
// ReadOptions::skip_bad_rows the row is skipped and the same message is added
// to the result's `warnings`. Rows are never dropped silently (empty lines
// are not rows).
//
// Everything here is deterministic: random choices take an explicit seed
// (dataset_rng.h), never a global generator. Thread-compatible.
#ifndef FEDFM_MODEL_DATASET_H_
#define FEDFM_MODEL_DATASET_H_

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/tokenizer.h"

namespace fedfm::model {

// Target value meaning "no loss at this position" (PyTorch's ignore_index).
inline constexpr int32_t kIgnoreIndex = -100;

// One example. T = number of input tokens.
//  - Next-token (language modelling, prompt/response): tokens[t] is the input
//    at position t and targets[t] the token to predict there (the next
//    token), or kIgnoreIndex for no loss. targets.size() == tokens.size().
//  - Classification: tokens is the text, targets is empty, label the class.
struct Example {
  std::vector<int32_t> tokens;   // [T]
  std::vector<int32_t> targets;  // [T], or empty for classification
  int32_t label = -1;            // class id in [0, num_labels), or -1
  std::string group;             // natural client key (speaker, source group) or ""
};

struct ReadOptions {
  // Skip bad rows with a warning instead of failing on the first one.
  bool skip_bad_rows = false;
  // Stop after this many good rows; 0 = read everything.
  size_t max_rows = 0;
  // The label set, id = index. Empty: the distinct labels of the file,
  // sorted (numerically when all are integers), so "ham" = 0, "spam" = 1 and
  // SST-2's "0" / "1" keep their values. Give it to read a train and an
  // eval file with the same ids; a label outside it is a bad row.
  std::vector<std::string> label_names;
};

// A text of one group (e.g. everything one Shakespeare speaker says).
struct GroupedText {
  std::string group;
  std::string text;
  int32_t num_parts = 0;  // speeches (Shakespeare) or documents joined into `text`
};

struct GroupedTexts {
  std::vector<GroupedText> groups;
  std::vector<std::string> warnings;
};

struct LabeledText {
  std::string text;
  int32_t label = -1;
  std::string group;   // source group where the format has one, else ""
  std::string source;  // "path:line" of the row
};

struct LabeledTexts {
  std::vector<LabeledText> rows;
  std::vector<std::string> label_names;  // id -> name as written in the file
  std::vector<std::string> warnings;     // skipped rows, "path:line: why"
};

struct PromptResponse {
  std::string prompt;
  std::string response;
  std::string group;   // optional "group" field, else ""
  std::string source;  // "path:line"
};

struct PromptResponses {
  std::vector<PromptResponse> rows;
  std::vector<std::string> warnings;
};

// --- Readers ----------------------------------------------------------------

// The whole file as one group named "" (num_parts 1).
absl::StatusOr<GroupedTexts> ReadPlainText(const std::filesystem::path& path);

// Tiny Shakespeare by speaker. A speech is a block of non-empty lines after
// an empty line (or the start of the file) whose first line is the speaker,
// ending in ':' ("ROMEO:"). Each speaker's text is their speeches in file
// order, each as written ("ROMEO:\n<lines>\n") followed by an empty line,
// so windows read like the original. Groups are ordered by first appearance
// (input.txt: 309 speakers, 7,222 speeches). A block whose first line is
// not "NAME:" is a bad row.
absl::StatusOr<GroupedTexts> ReadShakespeareBySpeaker(const std::filesystem::path& path,
                                                      const ReadOptions& options = {});
// The same on text in memory; `source_name` prefixes messages.
absl::StatusOr<GroupedTexts> SplitShakespeareBySpeaker(const std::string& text,
                                                       const std::string& source_name,
                                                       const ReadOptions& options = {});

// `label<TAB>text` per line (SMS Spam Collection, SST-2). The text is the
// rest of the line after the first tab, unquoted. A first line whose label
// field is "label" (any case) is a header and skipped.
absl::StatusOr<LabeledTexts> ReadLabeledTsv(const std::filesystem::path& path,
                                            const ReadOptions& options = {});

// RFC 4180 CSV (quoted fields, doubled quotes, quoted line breaks) with the
// label in the first field and the text in the others, joined by " " (AG
// News: "class","title","description"). A first record whose first field is
// "label" or "class" (any case) is a header and skipped.
absl::StatusOr<LabeledTexts> ReadLabeledCsv(const std::filesystem::path& path,
                                            const ReadOptions& options = {});

// The SpamAssassin TSV, gzip-compressed or not (detected from the content):
// header `label group id subject body`, fields optionally quoted as in CSV.
// text = subject + "\n" + body; group = the source group (easy-ham-1,
// easy-ham-2, hard-ham-1, spam-1, spam-2).
absl::StatusOr<LabeledTexts> ReadSpamAssassin(const std::filesystem::path& path,
                                              const ReadOptions& options = {});

// JSON Lines, one object per non-empty line with string "prompt" and
// "response" (and optionally "group").
absl::StatusOr<PromptResponses> ReadPromptResponseJsonl(const std::filesystem::path& path,
                                                        const ReadOptions& options = {});

// The file's bytes, gunzipped when they start with the gzip magic. NotFound /
// InvalidArgument (corrupt gzip) name the file.
absl::StatusOr<std::string> ReadMaybeGzip(const std::filesystem::path& path);

// --- Examples ---------------------------------------------------------------

struct WindowOptions {
  int32_t seq_len = 64;     // T, >= 1
  int32_t stride = 0;       // tokens between window starts; 0 = seq_len
  bool add_bos = true;      // BOS before each text
  bool add_eos = false;     // EOS after each text
  // Keep a last window shorter than T (at least 2 tokens) instead of
  // dropping the leftover tokens.
  bool keep_tail = false;
};

// Cuts `ids` into windows of T + 1 tokens starting every `stride` tokens:
// window k has tokens = ids[s, s + T), targets = ids[s + 1, s + T + 1),
// s = k * stride. FEDFM_CHECKs seq_len >= 1 and stride >= 0.
std::vector<Example> MakeLmWindows(std::span<const int32_t> ids, const WindowOptions& options,
                                   const std::string& group = "");

// Tokenizes each group's text separately and windows it; examples keep the
// group name, so partitioning by group keeps each speaker on one client.
std::vector<Example> MakeLmExamples(const Tokenizer& tokenizer, const GroupedTexts& texts,
                                    const WindowOptions& options);

struct ClassificationOptions {
  int32_t max_len = 128;  // tokens kept per text (truncated on the right), >= 1
  bool add_bos = true;
  bool add_eos = false;
};

// One example per row: tokens = the encoded text, label, group; no targets.
std::vector<Example> MakeClassificationExamples(const Tokenizer& tokenizer,
                                                const LabeledTexts& texts,
                                                const ClassificationOptions& options);

struct PromptResponseOptions {
  int32_t max_len = 256;  // T, >= 2
};

// Instruction tuning with the loss on the response only. The sequence is
// BOS + Encode(prompt) + Encode(response) + EOS (prompt and response encoded
// separately, so the boundary is exact; a llama2.c tokenizer gives the
// response its dummy-prefix space). tokens = seq[0, n-1), targets[t] =
// seq[t+1] where seq[t+1] is a response token or the EOS, kIgnoreIndex
// where it is a prompt token. Longer than T + 1: the prompt loses its
// leading tokens first (it keeps at least half the window when the response
// needs less), then the response is cut at the end; every example keeps at
// least one target.
std::vector<Example> MakePromptResponseExamples(const Tokenizer& tokenizer,
                                                const PromptResponses& pairs,
                                                const PromptResponseOptions& options);

// --- Splitting and batching ---------------------------------------------------

struct TrainEvalSplit {
  std::vector<size_t> train;  // ascending
  std::vector<size_t> eval;   // ascending
};

// Holds out round(n * eval_fraction) random indices of 0..n-1 for eval (at
// least one when eval_fraction > 0 and n >= 2, and never all of them).
// FEDFM_CHECKs 0 <= eval_fraction < 1.
TrainEvalSplit SplitTrainEval(size_t n, double eval_fraction, uint64_t seed);

// A batch of B examples padded to T tokens, row-major:
//   inputs [B, T]  token ids; pad_id after each row's length
//   targets[B, T]  next-token targets; kIgnoreIndex on padding and for
//                  classification examples
//   lengths[B]     real tokens per row (attention mask = t < lengths[b])
//   labels [B]     class ids, -1 where none
struct Batch {
  int32_t batch_size = 0;  // B
  int32_t seq_len = 0;     // T
  std::vector<int32_t> inputs;
  std::vector<int32_t> targets;
  std::vector<int32_t> lengths;
  std::vector<int32_t> labels;
};

// Packs examples[indices[b]] into row b. seq_len 0 = the longest selected
// example; longer examples are cut to seq_len on the right. FEDFM_CHECKs the
// indices are in range.
Batch MakeBatch(std::span<const Example> examples, std::span<const size_t> indices,
                int32_t pad_id, int32_t seq_len = 0);

// The batches of one epoch: a permutation of 0..n-1 from `seed` cut into
// groups of batch_size (the last one smaller unless drop_last).
std::vector<std::vector<size_t>> MakeBatchOrder(size_t n, size_t batch_size, uint64_t seed,
                                                bool drop_last = false);

}  // namespace fedfm::model

#endif  // FEDFM_MODEL_DATASET_H_
