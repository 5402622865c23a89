// Unicode pieces of the Hugging Face byte-level BPE tokenizer: code point
// classes and the pre-tokenizer split patterns, hand-written because
// std::regex has no \p{L} / \p{N}. Internal to model/; exposed for tests.
//
// Limits: letter / number classes are Unicode 14.0 General_Category L* / N*
// (the tokenizers library's regex engine may know a newer Unicode version:
// code points assigned after 14.0 can split differently). Whitespace is the
// White_Space property, as Oniguruma's \s. Case-insensitive contractions
// ("(?i:'s|...)") fold ASCII letters and U+017F (long s) only, as the full
// simple case folding does for these letters.
#ifndef FEDFM_MODEL_TOKENIZER_UNICODE_H_
#define FEDFM_MODEL_TOKENIZER_UNICODE_H_

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace fedfm::model::tokenizer_internal {

bool IsUnicodeLetter(char32_t cp);      // \p{L}
bool IsUnicodeNumber(char32_t cp);      // \p{N}
bool IsUnicodeWhitespace(char32_t cp);  // \s

// The pre-tokenizer regexes of the supported model families, matched in
// full (every alternative, in order, with the regex engine's backtracking):
enum class SplitPattern {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
  //  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
  // As kLlama3 with \p{N} (one digit per piece) instead of \p{N}{1,3}.
  kQwen2,
};

// The regex source of `pattern` as it appears in tokenizer.json.
const std::string& SplitPatternRegex(SplitPattern pattern);

// Splits `text` into the consecutive matches of `pattern` (find-all). The
// pieces cover `text` exactly; returned as [begin, end) byte offsets. Bytes
// that are not valid UTF-8 count as one code point each, of no letter,
// number or whitespace class.
std::vector<std::pair<size_t, size_t>> SplitPretokens(const std::string& text, SplitPattern pattern);

}  // namespace fedfm::model::tokenizer_internal

#endif  // FEDFM_MODEL_TOKENIZER_UNICODE_H_
