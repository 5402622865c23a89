#include "model/tokenizer_hf.h"

#include <array>
#include <cstdint>
#include <optional>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "model/tokenizer_unicode.h"
#include "nlohmann/json.hpp"
#include "protocols/file_util.h"
#include "protocols/status_macros.h"

namespace fedfm::model {
namespace {

using nlohmann::json;
using tokenizer_internal::SplitPattern;

void AppendUtf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// GPT-2's reversible byte -> code point map: printable Latin-1 bytes map to
// themselves, the other 68 bytes to U+0100 + k in byte order.
std::array<char32_t, 256> ByteToUnicode() {
  std::array<char32_t, 256> map{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    map[b] = printable ? static_cast<char32_t>(b) : next++;
  }
  return map;
}

// Next code point of valid UTF-8 `s` at `i` (advancing `i`); -1 if invalid.
int64_t NextCodePoint(const std::string& s, size_t& i) {
  auto b = static_cast<unsigned char>(s[i]);
  size_t len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || i + len > s.size()) return -1;
  char32_t cp = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
  for (size_t k = 1; k < len; ++k) {
    auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) return -1;
    cp = (cp << 6) | (c & 0x3F);
  }
  i += len;
  return cp;
}

// A word character for single_word added tokens (alphanumeric or '_').
bool IsWordChar(char32_t cp) {
  return cp == '_' || tokenizer_internal::IsUnicodeLetter(cp) ||
         tokenizer_internal::IsUnicodeNumber(cp);
}

// Last / first code point of s (0 when empty or invalid).
char32_t LastCodePoint(const std::string& s, size_t end) {
  if (end == 0) return 0;
  size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  size_t i = start;
  int64_t cp = NextCodePoint(s, i);
  return cp < 0 ? 0 : static_cast<char32_t>(cp);
}

char32_t FirstCodePoint(const std::string& s, size_t begin) {
  if (begin >= s.size()) return 0;
  size_t i = begin;
  int64_t cp = NextCodePoint(s, i);
  return cp < 0 ? 0 : static_cast<char32_t>(cp);
}

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool normalized = true;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

struct MergeRule {
  int32_t rank;
  int32_t merged_id;
};

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// A piece of the text after added-token splitting: an added token, or plain
// text [begin, end) for the pre-tokenizer and BPE.
struct Segment {
  size_t begin;
  size_t end;
  int32_t added_id;  // -1 for plain text
};

class HfBpeTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> Encode(const std::string& text, bool add_bos, bool add_eos) const override {
    std::vector<int32_t> ids;
    if (add_bos && bos_ >= 0) ids.push_back(bos_);
    std::vector<Segment> segments = {{0, text.size(), -1}};
    segments = SplitAdded(text, segments, /*normalized=*/false);
    segments = SplitAdded(text, segments, /*normalized=*/true);
    for (const Segment& segment : segments) {
      if (segment.added_id >= 0) {
        ids.push_back(segment.added_id);
      } else if (segment.end > segment.begin) {
        EncodePlain(text.substr(segment.begin, segment.end - segment.begin), ids);
      }
    }
    if (add_eos && eos_ >= 0) ids.push_back(eos_);
    return ids;
  }

  std::string Decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab_size_) continue;
      const Entry& entry = entries_[id];
      switch (entry.kind) {
        case Entry::kNone:
        case Entry::kSpecial:
          break;
        case Entry::kAdded:
          out += entry.text;
          break;
        case Entry::kModel:
          out += entry.bytes;
          break;
      }
    }
    return out;
  }

  int32_t bos_id() const override { return bos_; }
  int32_t eos_id() const override { return eos_; }
  int32_t pad_id() const override { return pad_; }
  int32_t vocab_size() const override { return vocab_size_; }

 private:
  friend class HfTokenizerBuilder;

  struct Entry {
    enum Kind : uint8_t { kNone, kModel, kAdded, kSpecial };
    Kind kind = kNone;
    std::string text;   // as in the file (byte-level code points for model tokens)
    std::string bytes;  // decoded bytes of a model token
  };

  // Splits the plain segments of `segments` on the added tokens whose
  // `normalized` flag equals `normalized`, leftmost-longest.
  std::vector<Segment> SplitAdded(const std::string& text, const std::vector<Segment>& segments,
                                  bool normalized) const {
    const auto& by_first = by_first_byte_[normalized ? 1 : 0];
    if (added_.empty()) return segments;
    std::vector<Segment> out;
    for (const Segment& segment : segments) {
      if (segment.added_id >= 0) {
        out.push_back(segment);
        continue;
      }
      size_t start_offset = segment.begin;
      size_t i = segment.begin;
      while (i < segment.end) {
        const AddedToken* best = nullptr;
        for (int index : by_first[static_cast<unsigned char>(text[i])]) {
          const AddedToken& token = added_[index];
          if (token.content.size() > segment.end - i) continue;
          if (text.compare(i, token.content.size(), token.content) != 0) continue;
          if (best == nullptr || token.content.size() > best->content.size()) best = &token;
        }
        if (best == nullptr) {
          ++i;
          continue;
        }
        size_t start = i;
        size_t stop = i + best->content.size();
        if (best->single_word) {
          bool space_before = start == segment.begin || !IsWordChar(LastCodePoint(text, start));
          bool space_after = stop == segment.end || !IsWordChar(FirstCodePoint(text, stop));
          if (!space_before || !space_after) {
            i = stop;  // the automaton moves past a rejected match
            continue;
          }
        }
        if (best->lstrip) {
          size_t new_start = start;
          while (new_start > start_offset) {
            size_t prev = new_start - 1;
            while (prev > start_offset && (static_cast<unsigned char>(text[prev]) & 0xC0) == 0x80) {
              --prev;
            }
            size_t k = prev;
            int64_t cp = NextCodePoint(text, k);
            if (cp < 0 || !tokenizer_internal::IsUnicodeWhitespace(static_cast<char32_t>(cp))) break;
            new_start = prev;
          }
          start = new_start;
        }
        if (best->rstrip) {
          while (stop < segment.end) {
            size_t k = stop;
            int64_t cp = NextCodePoint(text, k);
            if (cp < 0 || !tokenizer_internal::IsUnicodeWhitespace(static_cast<char32_t>(cp))) break;
            stop = k;
          }
        }
        if (start_offset < start) out.push_back({start_offset, start, -1});
        out.push_back({start, stop, best->id});
        start_offset = stop;
        i = stop;
      }
      if (start_offset < segment.end) out.push_back({start_offset, segment.end, -1});
    }
    return out;
  }

  void EncodePlain(const std::string& text, std::vector<int32_t>& ids) const {
    std::vector<std::string> pieces;
    if (split_.has_value()) {
      for (auto [begin, end] : tokenizer_internal::SplitPretokens(text, *split_)) {
        pieces.push_back(text.substr(begin, end - begin));
      }
    } else {
      pieces.push_back(text);
    }
    for (std::string& piece : pieces) {
      if (add_prefix_space_ && (piece.empty() || piece[0] != ' ')) piece = " " + piece;
      if (byte_level_regex_) {
        for (auto [begin, end] : tokenizer_internal::SplitPretokens(piece, SplitPattern::kGpt2)) {
          Bpe(piece.substr(begin, end - begin), ids);
        }
      } else {
        Bpe(piece, ids);
      }
    }
  }

  // Byte-level BPE of one pre-token: bytes -> byte symbols, then the pair of
  // lowest merge rank (leftmost on ties) is merged until none is left.
  void Bpe(const std::string& piece, std::vector<int32_t>& ids) const {
    if (piece.empty()) return;
    if (ignore_merges_) {
      std::string mapped;
      for (char b : piece) mapped += byte_text_[static_cast<unsigned char>(b)];
      auto it = vocab_.find(mapped);
      if (it != vocab_.end()) {
        ids.push_back(it->second);
        return;
      }
    }
    const int n = static_cast<int>(piece.size());
    std::vector<int32_t> symbols(n);
    for (int i = 0; i < n; ++i) symbols[i] = byte_id_[static_cast<unsigned char>(piece[i])];
    if (n > 1) {
      std::vector<int> next(n), prev(n);
      std::vector<uint32_t> version(n, 0);
      for (int i = 0; i < n; ++i) {
        prev[i] = i - 1;
        next[i] = i + 1 < n ? i + 1 : -1;
      }
      struct Candidate {
        int32_t rank;
        int left;
        int right;
        int32_t merged_id;
        uint32_t left_version;
        uint32_t right_version;
      };
      auto worse = [](const Candidate& a, const Candidate& b) {
        if (a.rank != b.rank) return a.rank > b.rank;
        return a.left > b.left;
      };
      std::priority_queue<Candidate, std::vector<Candidate>, decltype(worse)> heap(worse);
      auto push_pair = [&](int left, int right) {
        if (left < 0 || right < 0) return;
        auto it = merges_.find(PairKey(symbols[left], symbols[right]));
        if (it == merges_.end()) return;
        heap.push({it->second.rank, left, right, it->second.merged_id, version[left],
                   version[right]});
      };
      for (int i = 0; i + 1 < n; ++i) push_pair(i, i + 1);
      while (!heap.empty()) {
        Candidate c = heap.top();
        heap.pop();
        if (version[c.left] != c.left_version || version[c.right] != c.right_version ||
            next[c.left] != c.right) {
          continue;
        }
        symbols[c.left] = c.merged_id;
        ++version[c.left];
        ++version[c.right];
        symbols[c.right] = -1;
        next[c.left] = next[c.right];
        if (next[c.right] >= 0) prev[next[c.right]] = c.left;
        push_pair(prev[c.left], c.left);
        push_pair(c.left, next[c.left]);
      }
      for (int i = 0; i >= 0; i = next[i]) ids.push_back(symbols[i]);
      return;
    }
    ids.push_back(symbols[0]);
  }

  std::vector<Entry> entries_;
  std::unordered_map<std::string, int32_t> vocab_;  // model vocabulary
  std::unordered_map<uint64_t, MergeRule> merges_;
  std::vector<AddedToken> added_;
  // [normalized ? 1 : 0][first byte] -> indices into added_.
  std::array<std::array<std::vector<int>, 256>, 2> by_first_byte_;
  std::array<int32_t, 256> byte_id_{};       // id of each byte's one-symbol token
  std::array<std::string, 256> byte_text_;   // UTF-8 of each byte's code point
  std::optional<SplitPattern> split_;        // Split pre-tokenizer, if any
  bool byte_level_regex_ = false;            // ByteLevel with use_regex
  bool add_prefix_space_ = false;
  bool ignore_merges_ = false;
  int32_t bos_ = -1;
  int32_t eos_ = -1;
  int32_t pad_ = 0;
  int32_t vocab_size_ = 0;
};

// Reads tokenizer.json into an HfBpeTokenizer, with errors naming the key.
class HfTokenizerBuilder {
 public:
  explicit HfTokenizerBuilder(std::string name) : name_(std::move(name)) {}

  absl::StatusOr<std::unique_ptr<Tokenizer>> Build(const json& root,
                                                   const json* tokenizer_config) {
    auto t = std::make_unique<HfBpeTokenizer>();
    if (!root.is_object()) return Invalid("", "the top level is not a JSON object");
    FEDFM_RETURN_IF_ERROR(ReadModel(root, *t));
    FEDFM_RETURN_IF_ERROR(ReadAddedTokens(root, *t));
    FEDFM_RETURN_IF_ERROR(ReadNormalizer(root));
    FEDFM_RETURN_IF_ERROR(ReadPreTokenizer(root, *t));
    FEDFM_RETURN_IF_ERROR(ReadDecoder(root));
    FEDFM_RETURN_IF_ERROR(ReadSpecialIds(root, tokenizer_config, *t));
    return std::unique_ptr<Tokenizer>(std::move(t));
  }

 private:
  absl::Status Invalid(const std::string& key, const std::string& what) const {
    return absl::InvalidArgumentError(
        key.empty() ? absl::StrCat(name_, ": ", what)
                    : absl::StrCat(name_, ": key \"", key, "\": ", what));
  }
  absl::Status Unsupported(const std::string& key, const std::string& what) const {
    return absl::UnimplementedError(absl::StrCat(name_, ": key \"", key, "\": ", what));
  }

  absl::Status ReadModel(const json& root, HfBpeTokenizer& t) {
    auto it = root.find("model");
    if (it == root.end() || !it->is_object()) return Invalid("model", "missing or not an object");
    const json& model = *it;
    std::string type = model.value("type", std::string("BPE"));
    if (type != "BPE") {
      return Unsupported("model.type", absl::StrCat("\"", type, "\"; only byte-level \"BPE\" is supported"));
    }
    if (model.contains("dropout") && !model["dropout"].is_null()) {
      return Unsupported("model.dropout", "BPE dropout is not supported");
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty()) {
        return Unsupported(absl::StrCat("model.", key), "must be null or empty");
      }
    }
    if (model.contains("ignore_merges") && model["ignore_merges"].is_boolean()) {
      t.ignore_merges_ = model["ignore_merges"].get<bool>();
    }
    auto vocab = model.find("vocab");
    if (vocab == model.end() || !vocab->is_object()) {
      return Invalid("model.vocab", "missing or not an object");
    }
    int32_t max_id = -1;
    for (auto entry = vocab->begin(); entry != vocab->end(); ++entry) {
      if (!entry.value().is_number_integer() || entry.value().get<int64_t>() < 0 ||
          entry.value().get<int64_t>() > (int64_t{1} << 30)) {
        return Invalid(absl::StrCat("model.vocab.", entry.key()), "id is not a valid integer");
      }
      auto id = static_cast<int32_t>(entry.value().get<int64_t>());
      t.vocab_.emplace(entry.key(), id);
      max_id = std::max(max_id, id);
    }
    t.entries_.resize(max_id + 1);
    const std::array<char32_t, 256> byte_to_unicode = ByteToUnicode();
    std::unordered_map<char32_t, unsigned char> unicode_to_byte;
    for (int b = 0; b < 256; ++b) {
      AppendUtf8(byte_to_unicode[b], t.byte_text_[b]);
      unicode_to_byte[byte_to_unicode[b]] = static_cast<unsigned char>(b);
    }
    for (const auto& [text, id] : t.vocab_) {
      HfBpeTokenizer::Entry& entry = t.entries_[id];
      entry.kind = HfBpeTokenizer::Entry::kModel;
      entry.text = text;
      // Byte-level decode; a token with a code point outside the byte map
      // decodes to its own UTF-8, as the tokenizers library does.
      std::string bytes;
      size_t i = 0;
      bool mapped = true;
      while (i < text.size()) {
        int64_t cp = NextCodePoint(text, i);
        auto b = cp < 0 ? unicode_to_byte.end() : unicode_to_byte.find(static_cast<char32_t>(cp));
        if (b == unicode_to_byte.end()) {
          mapped = false;
          break;
        }
        bytes.push_back(static_cast<char>(b->second));
      }
      entry.bytes = mapped ? bytes : text;
    }
    for (int b = 0; b < 256; ++b) {
      auto id = t.vocab_.find(t.byte_text_[b]);
      if (id == t.vocab_.end()) {
        return Invalid("model.vocab", absl::StrCat("no token for byte ", b,
                                                   "; not a byte-level BPE vocabulary"));
      }
      t.byte_id_[b] = id->second;
    }
    auto merges = model.find("merges");
    if (merges == model.end() || !merges->is_array()) {
      return Invalid("model.merges", "missing or not an array");
    }
    int32_t rank = 0;
    for (const json& merge : *merges) {
      std::string left, right;
      if (merge.is_string()) {
        const std::string& s = merge.get_ref<const std::string&>();
        size_t space = s.find(' ');
        if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
          return Invalid(absl::StrCat("model.merges[", rank, "]"),
                         absl::StrCat("\"", s, "\" is not two tokens separated by one space"));
        }
        left = s.substr(0, space);
        right = s.substr(space + 1);
      } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
                 merge[1].is_string()) {
        left = merge[0].get<std::string>();
        right = merge[1].get<std::string>();
      } else {
        return Invalid(absl::StrCat("model.merges[", rank, "]"),
                       "expected \"a b\" or [\"a\", \"b\"]");
      }
      auto l = t.vocab_.find(left);
      auto r = t.vocab_.find(right);
      auto m = t.vocab_.find(left + right);
      if (l == t.vocab_.end() || r == t.vocab_.end() || m == t.vocab_.end()) {
        return Invalid(absl::StrCat("model.merges[", rank, "]"),
                       absl::StrCat("\"", left, "\" + \"", right,
                                    "\": a part or the merged token is not in model.vocab"));
      }
      t.merges_.emplace(PairKey(l->second, r->second), MergeRule{rank, m->second});
      ++rank;
    }
    return absl::OkStatus();
  }

  absl::Status ReadAddedTokens(const json& root, HfBpeTokenizer& t) {
    auto it = root.find("added_tokens");
    if (it == root.end() || it->is_null()) return absl::OkStatus();
    if (!it->is_array()) return Invalid("added_tokens", "not an array");
    int index = 0;
    for (const json& item : *it) {
      const std::string key = absl::StrCat("added_tokens[", index++, "]");
      if (!item.is_object() || !item.contains("id") || !item["id"].is_number_integer() ||
          !item.contains("content") || !item["content"].is_string()) {
        return Invalid(key, "expected an object with integer \"id\" and string \"content\"");
      }
      AddedToken token;
      int64_t id = item["id"].get<int64_t>();
      if (id < 0 || id > (int64_t{1} << 30)) return Invalid(key, absl::StrCat("bad id ", id));
      token.id = static_cast<int32_t>(id);
      token.content = item["content"].get<std::string>();
      if (token.content.empty()) return Invalid(key, "empty content");
      token.special = item.value("special", false);
      token.normalized = item.value("normalized", !token.special);
      token.lstrip = item.value("lstrip", false);
      token.rstrip = item.value("rstrip", false);
      token.single_word = item.value("single_word", false);
      if (token.id >= static_cast<int32_t>(t.entries_.size())) t.entries_.resize(token.id + 1);
      HfBpeTokenizer::Entry& entry = t.entries_[token.id];
      entry.kind = token.special ? HfBpeTokenizer::Entry::kSpecial : HfBpeTokenizer::Entry::kAdded;
      entry.text = token.content;
      entry.bytes = token.content;
      t.added_.push_back(std::move(token));
    }
    for (size_t i = 0; i < t.added_.size(); ++i) {
      const AddedToken& token = t.added_[i];
      t.by_first_byte_[token.normalized ? 1 : 0][static_cast<unsigned char>(token.content[0])]
          .push_back(static_cast<int>(i));
    }
    return absl::OkStatus();
  }

  absl::Status ReadNormalizer(const json& root) {
    auto it = root.find("normalizer");
    if (it == root.end() || it->is_null()) return absl::OkStatus();
    std::string type = it->value("type", std::string());
    if (type == "NFC") return absl::OkStatus();
    return Unsupported("normalizer.type", absl::StrCat("\"", type, "\"; only null or \"NFC\""));
  }

  static void ReadByteLevel(const json& node, HfBpeTokenizer& t) {
    t.add_prefix_space_ = node.value("add_prefix_space", false);
    t.byte_level_regex_ = node.value("use_regex", true);
  }

  absl::Status ReadPreTokenizer(const json& root, HfBpeTokenizer& t) {
    auto it = root.find("pre_tokenizer");
    if (it == root.end() || !it->is_object()) {
      return Unsupported("pre_tokenizer", "missing; a byte-level BPE needs a ByteLevel pre-tokenizer");
    }
    std::string type = it->value("type", std::string());
    if (type == "ByteLevel") {
      ReadByteLevel(*it, t);
      return absl::OkStatus();
    }
    if (type != "Sequence") {
      return Unsupported("pre_tokenizer.type",
                         absl::StrCat("\"", type, "\"; only \"ByteLevel\" or a \"Sequence\" of "
                                      "\"Split\" and \"ByteLevel\" (Metaspace / SentencePiece "
                                      "tokenizers: use the llama2.c tokenizer.bin)"));
    }
    auto list = it->find("pretokenizers");
    if (list == it->end() || !list->is_array()) {
      return Invalid("pre_tokenizer.pretokenizers", "missing or not an array");
    }
    bool byte_level = false;
    for (size_t i = 0; i < list->size(); ++i) {
      const json& step = (*list)[i];
      const std::string key = absl::StrCat("pre_tokenizer.pretokenizers[", i, "]");
      std::string step_type = step.value("type", std::string());
      if (step_type == "Split" && !byte_level && !t.split_.has_value()) {
        const json* pattern = step.contains("pattern") ? &step["pattern"] : nullptr;
        if (pattern == nullptr || !pattern->is_object() || !pattern->contains("Regex") ||
            !(*pattern)["Regex"].is_string()) {
          return Unsupported(key + ".pattern", "only {\"Regex\": ...} patterns are supported");
        }
        if (step.value("behavior", std::string()) != "Isolated" || step.value("invert", false)) {
          return Unsupported(key, "only behavior \"Isolated\" without invert is supported");
        }
        const std::string regex = (*pattern)["Regex"].get<std::string>();
        for (SplitPattern candidate :
             {SplitPattern::kGpt2, SplitPattern::kLlama3, SplitPattern::kQwen2}) {
          if (regex == tokenizer_internal::SplitPatternRegex(candidate)) t.split_ = candidate;
        }
        if (!t.split_.has_value()) {
          return Unsupported(key + ".pattern.Regex",
                             absl::StrCat("unknown split regex ", regex,
                                          "; the GPT-2, Llama-3 and Qwen2 patterns are supported"));
        }
      } else if (step_type == "ByteLevel" && !byte_level) {
        ReadByteLevel(step, t);
        byte_level = true;
      } else {
        return Unsupported(key + ".type", absl::StrCat("\"", step_type,
                                                       "\" here; only Split then ByteLevel"));
      }
    }
    if (!byte_level) return Unsupported("pre_tokenizer", "no ByteLevel step");
    return absl::OkStatus();
  }

  absl::Status ReadDecoder(const json& root) {
    auto it = root.find("decoder");
    if (it == root.end() || it->is_null()) return absl::OkStatus();
    std::string type = it->value("type", std::string());
    if (type == "ByteLevel") return absl::OkStatus();
    return Unsupported("decoder.type", absl::StrCat("\"", type, "\"; only \"ByteLevel\""));
  }

  // Collects the special tokens of a TemplateProcessing "single" template
  // before and after the sequence.
  void ReadTemplate(const json& processor, std::vector<std::string>& before,
                    std::vector<std::string>& after) {
    std::string type = processor.value("type", std::string());
    if (type == "Sequence" && processor.contains("processors") &&
        processor["processors"].is_array()) {
      for (const json& inner : processor["processors"]) ReadTemplate(inner, before, after);
      return;
    }
    if (type != "TemplateProcessing" || !processor.contains("single") ||
        !processor["single"].is_array()) {
      return;
    }
    bool seen_sequence = false;
    for (const json& piece : processor["single"]) {
      if (piece.contains("Sequence")) {
        seen_sequence = true;
      } else if (piece.contains("SpecialToken") && piece["SpecialToken"].contains("id") &&
                 piece["SpecialToken"]["id"].is_string()) {
        (seen_sequence ? after : before).push_back(piece["SpecialToken"]["id"].get<std::string>());
      }
    }
  }

  // The id of a token named in tokenizer_config.json: a string, an object
  // with "content", or null (-1).
  absl::StatusOr<int32_t> ConfigTokenId(const json& config, const char* key,
                                        const HfBpeTokenizer& t, const std::string& config_name) {
    if (!config.contains(key) || config[key].is_null()) return -1;
    const json& value = config[key];
    std::string content;
    if (value.is_string()) {
      content = value.get<std::string>();
    } else if (value.is_object() && value.contains("content") && value["content"].is_string()) {
      content = value["content"].get<std::string>();
    } else {
      return absl::InvalidArgumentError(absl::StrCat(config_name, ": key \"", key,
                                                     "\": expected a string or {\"content\": ...}"));
    }
    int32_t id = TokenId(t, content);
    if (id < 0) {
      return absl::InvalidArgumentError(absl::StrCat(config_name, ": key \"", key, "\": token \"",
                                                     content, "\" is not in the vocabulary"));
    }
    return id;
  }

  static int32_t TokenId(const HfBpeTokenizer& t, const std::string& content) {
    for (const AddedToken& token : t.added_) {
      if (token.content == content) return token.id;
    }
    auto it = t.vocab_.find(content);
    return it == t.vocab_.end() ? -1 : it->second;
  }

  absl::Status ReadSpecialIds(const json& root, const json* config, HfBpeTokenizer& t) {
    t.vocab_size_ = static_cast<int32_t>(t.entries_.size());
    std::vector<std::string> before, after;
    if (root.contains("post_processor") && root["post_processor"].is_object()) {
      ReadTemplate(root["post_processor"], before, after);
    }
    t.bos_ = before.size() == 1 ? TokenId(t, before[0]) : -1;
    t.eos_ = after.size() == 1 ? TokenId(t, after[0]) : -1;
    if (t.eos_ < 0) {
      for (const char* name : {"<|end_of_text|>", "<|endoftext|>", "</s>"}) {
        int32_t id = TokenId(t, name);
        if (id >= 0) {
          t.eos_ = id;
          break;
        }
      }
    }
    int32_t pad = -1;
    if (config != nullptr) {
      const std::string config_name =
          (std::filesystem::path(name_).parent_path() / "tokenizer_config.json").string();
      if (config->contains("bos_token")) {
        FEDFM_ASSIGN_OR_RETURN(t.bos_, ConfigTokenId(*config, "bos_token", t, config_name));
      }
      if (config->contains("eos_token")) {
        FEDFM_ASSIGN_OR_RETURN(t.eos_, ConfigTokenId(*config, "eos_token", t, config_name));
      }
      FEDFM_ASSIGN_OR_RETURN(pad, ConfigTokenId(*config, "pad_token", t, config_name));
    }
    t.pad_ = pad >= 0 ? pad : t.eos_ >= 0 ? t.eos_ : 0;
    return absl::OkStatus();
  }

  std::string name_;
};

absl::StatusOr<json> ParseJsonFile(const std::filesystem::path& path) {
  FEDFM_ASSIGN_OR_RETURN(std::string text, protocols::ReadFileToString(path));
  json value = json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": not valid JSON"));
  }
  return value;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const std::filesystem::path& path) {
  FEDFM_ASSIGN_OR_RETURN(json root, ParseJsonFile(path));
  std::optional<json> config;
  std::filesystem::path config_path = path.parent_path() / "tokenizer_config.json";
  std::error_code error;
  if (std::filesystem::exists(config_path, error)) {
    FEDFM_ASSIGN_OR_RETURN(config, ParseJsonFile(config_path));
  }
  try {
    return HfTokenizerBuilder(path.string()).Build(root, config ? &*config : nullptr);
  } catch (const json::exception& e) {
    // A value of an unexpected type that the checks above did not foresee.
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": ", e.what()));
  }
}

}  // namespace fedfm::model
