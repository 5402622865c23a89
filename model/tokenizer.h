// Tokenizers: text <-> token ids for the models fedfm fine-tunes.
//
// Two file formats, chosen by LoadTokenizer from the file name:
//   - llama2.c `tokenizer.bin` (e.g. assets/stories260K/tok512.bin): a
//     SentencePiece-style vocabulary with merge scores, encoded exactly as
//     llama2.c's run.c `encode` does (dummy-prefix space, UTF-8 code points,
//     byte fallback, greedy highest-score merges).
//   - Hugging Face `tokenizer.json` with a byte-level BPE model (GPT-2,
//     Llama-3, Qwen2 families); see tokenizer_hf.h for what is supported.
//
// Tokenizers are immutable after loading: every method is const and safe to
// call from several threads at once.
#ifndef FEDFM_MODEL_TOKENIZER_H_
#define FEDFM_MODEL_TOKENIZER_H_

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace fedfm::model {

class Tokenizer {
 public:
  virtual ~Tokenizer();

  // Token ids of `text` (bytes, normally UTF-8). `add_bos` prepends bos_id()
  // and `add_eos` appends eos_id(); each is ignored when the tokenizer has no
  // such token (id -1). Never fails: bytes without a token of their own are
  // encoded through byte fallback.
  virtual std::vector<int32_t> Encode(const std::string& text, bool add_bos,
                                      bool add_eos) const = 0;

  // The text of `ids`. Control tokens (BOS, EOS, pad and other special
  // tokens) produce no text; ids outside [0, vocab_size()) are skipped.
  virtual std::string Decode(const std::vector<int32_t>& ids) const = 0;

  // -1 when the tokenizer has no such token.
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;
  // The id to fill padding positions with; always a valid id (falls back to
  // eos_id(), then 0). Padding positions must also be masked out of the loss.
  virtual int32_t pad_id() const = 0;

  // Number of ids, i.e. every id returned by Encode is < vocab_size().
  virtual int32_t vocab_size() const = 0;
};

// Loads `path` by its name: "*.bin" -> llama2.c tokenizer (vocabulary size
// inferred by reading to the end of the file), "*.json" -> Hugging Face
// tokenizer.json, a directory -> its tokenizer.json.
// NotFound if the file is missing; InvalidArgument naming the file and the
// offset or key when it is malformed; Unimplemented for tokenizer.json
// features outside the supported set.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::filesystem::path& path);

// llama2.c tokenizer.bin. `vocab_size` > 0 reads exactly that many entries
// (run.c takes it from the model header); -1 reads entries to the end of the
// file. BOS = 1, EOS = 2, byte fallback id = byte + 3.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadLlama2Tokenizer(const std::filesystem::path& path,
                                                               int32_t vocab_size = -1);

}  // namespace fedfm::model

#endif  // FEDFM_MODEL_TOKENIZER_H_
