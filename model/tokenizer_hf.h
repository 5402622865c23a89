// Hugging Face tokenizer.json with a byte-level BPE model: the GPT-2,
// Llama-3 and Qwen2 families.
//
// Supported (anything else is an Unimplemented error naming the key):
//   model:          type "BPE" with `vocab`, `merges` ("a b" strings or
//                   ["a", "b"] pairs), `ignore_merges`; no dropout, no
//                   continuing_subword_prefix / end_of_word_suffix.
//   normalizer:     null, or "NFC" taken as the identity (exact for text
//                   already in NFC, which includes ASCII and most text).
//   pre_tokenizer:  "ByteLevel" (with its GPT-2 regex when use_regex, and
//                   add_prefix_space), or a "Sequence" of a "Split" on one of
//                   the GPT-2 / Llama-3 / Qwen2 regexes (behavior "Isolated")
//                   and a "ByteLevel"; see tokenizer_unicode.h for the regex
//                   limits.
//   added_tokens:   matched before BPE, leftmost-longest, tokens with
//                   normalized=false first, then the others (as the
//                   tokenizers library does); lstrip, rstrip, single_word.
//   post_processor: only read to find BOS/EOS ("TemplateProcessing", also
//                   inside a "Sequence").
//   decoder:        null or "ByteLevel".
//
// BOS / EOS / pad come from tokenizer_config.json beside tokenizer.json
// (`bos_token`, `eos_token`, `pad_token`: a string or {"content": ...}) when
// it exists; otherwise BOS and EOS are the special tokens that the
// post_processor template puts before / after the text, and EOS falls back to
// the first added token named <|end_of_text|>, <|endoftext|> or </s>.
//
// Encode(add_bos, add_eos) adds bos_id() / eos_id() when they exist; it
// matches the tokenizers library's `encode(text, add_special_tokens)` for
// templates that add at most a BOS. Decode returns the raw bytes (no lossy
// UTF-8 repair), skipping special added tokens.
#ifndef FEDFM_MODEL_TOKENIZER_HF_H_
#define FEDFM_MODEL_TOKENIZER_HF_H_

#include <filesystem>
#include <memory>

#include "absl/status/statusor.h"
#include "model/tokenizer.h"

namespace fedfm::model {

// NotFound if `path` is missing; InvalidArgument (naming the file and key)
// for malformed JSON or a vocabulary that contradicts itself; Unimplemented
// for a tokenizer outside the supported set above.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const std::filesystem::path& path);

}  // namespace fedfm::model

#endif  // FEDFM_MODEL_TOKENIZER_HF_H_
