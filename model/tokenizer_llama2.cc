// llama2.c tokenizer.bin: scored BPE with byte fallback, bit-for-bit the
// behaviour of run.c's encode/decode.
//
// File layout (little-endian): int32 max_token_length, then per token
// float score, int32 len, len bytes. The vocabulary size is not stored.

#include <cstring>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "model/tokenizer.h"
#include "protocols/file_util.h"
#include "protocols/status_macros.h"

namespace fedfm::model {
namespace {

constexpr int32_t kBos = 1;
constexpr int32_t kEos = 2;
constexpr int32_t kByteFallbackOffset = 3;

// Parses "<0xXX>" (run.c: sscanf "<0x%02hhX>"); -1 if `piece` is not a byte token.
int ParseBytePiece(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  int value = 0;
  for (int i = 3; i < 5; ++i) {
    char c = piece[i];
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return -1;
    }
    value = value * 16 + digit;
  }
  return value;
}

class Llama2Tokenizer final : public Tokenizer {
 public:
  Llama2Tokenizer(std::vector<std::string> pieces, std::vector<float> scores)
      : pieces_(std::move(pieces)), scores_(std::move(scores)) {
    ids_.reserve(pieces_.size());
    // run.c binary-searches a sorted copy; duplicate pieces do not occur in
    // real vocabularies, the first id wins here.
    for (size_t i = 0; i < pieces_.size(); ++i) ids_.emplace(pieces_[i], static_cast<int32_t>(i));
    byte_value_.resize(pieces_.size());
    for (size_t i = 0; i < pieces_.size(); ++i) byte_value_[i] = ParseBytePiece(pieces_[i]);
  }

  std::vector<int32_t> Encode(const std::string& text, bool add_bos, bool add_eos) const override {
    std::vector<int32_t> tokens;
    tokens.reserve(text.size() + 3);
    if (add_bos) tokens.push_back(kBos);
    if (!text.empty()) {
      int32_t dummy_prefix = Lookup(" ");
      // run.c pushes the (-1) lookup result unchecked; a vocabulary without
      // " " has no dummy prefix here.
      if (dummy_prefix >= 0) tokens.push_back(dummy_prefix);
    }
    // Code points (at most 4 bytes; stray continuation bytes extend the
    // current one, as in run.c), each looked up whole or byte-fallen-back.
    std::string buffer;
    for (size_t i = 0; i < text.size(); ++i) {
      auto c = static_cast<unsigned char>(text[i]);
      if ((c & 0xC0) != 0x80) buffer.clear();
      buffer.push_back(static_cast<char>(c));
      bool next_continues =
          i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80;
      if (next_continues && buffer.size() < 4) continue;
      int32_t id = Lookup(buffer);
      if (id >= 0) {
        tokens.push_back(id);
      } else {
        for (char b : buffer) {
          tokens.push_back(static_cast<unsigned char>(b) + kByteFallbackOffset);
        }
      }
      buffer.clear();
    }
    Merge(tokens);
    if (add_eos) tokens.push_back(kEos);
    return tokens;
  }

  std::string Decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    int32_t prev = -1;
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab_size()) {
        prev = id;
        continue;
      }
      if (id != kBos && id != kEos) {
        int byte = byte_value_[id];
        if (byte >= 0) {
          out.push_back(static_cast<char>(byte));
        } else {
          const std::string& piece = pieces_[id];
          size_t skip = (prev == kBos && !piece.empty() && piece[0] == ' ') ? 1 : 0;
          out.append(piece, skip, std::string::npos);
        }
      }
      prev = id;
    }
    return out;
  }

  int32_t bos_id() const override { return kBos; }
  int32_t eos_id() const override { return kEos; }
  int32_t pad_id() const override { return kEos; }
  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }

 private:
  int32_t Lookup(const std::string& piece) const {
    auto it = ids_.find(piece);
    return it == ids_.end() ? -1 : it->second;
  }

  // run.c repeatedly merges the adjacent pair whose concatenation is in the
  // vocabulary with the highest score (strictly above -1e10), the leftmost
  // on ties, until none is left. That is O(n^2); this does the same merges
  // in O(n log n) with a linked list and a heap of candidate pairs ordered by
  // (score desc, position asc). A node keeps the position of its leftmost
  // original token, so positions order nodes as the list does.
  void Merge(std::vector<int32_t>& tokens) const {
    const int n = static_cast<int>(tokens.size());
    if (n < 2) return;
    std::vector<int> prev(n), next(n);
    std::vector<uint32_t> version(n, 0);  // bumped whenever a node changes or dies
    std::vector<bool> alive(n, true);
    for (int i = 0; i < n; ++i) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    struct Candidate {
      float score;
      int left;
      int right;
      int32_t id;
      uint32_t left_version;
      uint32_t right_version;
    };
    auto worse = [](const Candidate& a, const Candidate& b) {
      if (a.score != b.score) return a.score < b.score;
      return a.left > b.left;
    };
    std::priority_queue<Candidate, std::vector<Candidate>, decltype(worse)> heap(worse);
    std::string joined;
    auto push_pair = [&](int left, int right) {
      if (left < 0 || right < 0) return;
      joined = pieces_[tokens[left]];
      joined += pieces_[tokens[right]];
      int32_t id = Lookup(joined);
      if (id < 0 || !(scores_[id] > -1e10f)) return;
      heap.push({scores_[id], left, right, id, version[left], version[right]});
    };
    for (int i = 0; i + 1 < n; ++i) push_pair(i, i + 1);
    while (!heap.empty()) {
      Candidate c = heap.top();
      heap.pop();
      if (!alive[c.left] || !alive[c.right] || next[c.left] != c.right ||
          version[c.left] != c.left_version || version[c.right] != c.right_version) {
        continue;
      }
      tokens[c.left] = c.id;
      ++version[c.left];
      alive[c.right] = false;
      ++version[c.right];
      next[c.left] = next[c.right];
      if (next[c.right] >= 0) prev[next[c.right]] = c.left;
      push_pair(prev[c.left], c.left);
      push_pair(c.left, next[c.left]);
    }
    int out = 0;
    for (int i = 0; i >= 0 && i < n; i = next[i]) tokens[out++] = tokens[i];
    tokens.resize(out);
  }

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<int> byte_value_;  // 0..255 for "<0xXX>" pieces, else -1
  std::unordered_map<std::string, int32_t> ids_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadLlama2Tokenizer(const std::filesystem::path& path,
                                                               int32_t vocab_size) {
  FEDFM_ASSIGN_OR_RETURN(std::string data, protocols::ReadFileToString(path));
  const std::string name = path.string();
  size_t offset = 0;
  auto read_i32 = [&](int32_t& value) {
    if (data.size() - offset < 4) return false;
    std::memcpy(&value, data.data() + offset, 4);
    offset += 4;
    return true;
  };
  int32_t max_token_length = 0;
  if (!read_i32(max_token_length) || max_token_length <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": not a llama2.c tokenizer (bad max_token_length header)"));
  }
  std::vector<std::string> pieces;
  std::vector<float> scores;
  while (vocab_size < 0 ? offset < data.size() : static_cast<int32_t>(pieces.size()) < vocab_size) {
    const size_t entry_offset = offset;
    int32_t score_bits = 0;
    int32_t len = 0;
    if (!read_i32(score_bits) || !read_i32(len)) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": truncated entry ", pieces.size(),
                                                     " at byte offset ", entry_offset));
    }
    if (len < 0 || static_cast<size_t>(len) > data.size() - offset) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": entry ", pieces.size(),
                                                     " at byte offset ", entry_offset,
                                                     " has bad length ", len));
    }
    float score;
    std::memcpy(&score, &score_bits, 4);
    scores.push_back(score);
    pieces.emplace_back(data.data() + offset, static_cast<size_t>(len));
    offset += static_cast<size_t>(len);
  }
  if (pieces.size() <= static_cast<size_t>(kByteFallbackOffset + 255)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", pieces.size(),
                                                   " tokens; a llama2.c vocabulary needs at least ",
                                                   kByteFallbackOffset + 256,
                                                   " (<unk>, BOS, EOS and 256 byte tokens)"));
  }
  return std::unique_ptr<Tokenizer>(new Llama2Tokenizer(std::move(pieces), std::move(scores)));
}

}  // namespace fedfm::model
