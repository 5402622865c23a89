#include "model/tokenizer.h"

#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "gtest/gtest.h"
#include "protocols/file_util.h"

namespace fedfm::model {
namespace {

constexpr char kTok512[] = "assets/stories260K/tok512.bin";

std::unique_ptr<Tokenizer> LoadTok512() {
  auto tokenizer = LoadTokenizer(kTok512);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(tokenizer).value() : nullptr;
}

// The plain quadratic algorithm of llama2.c run.c `encode`, transcribed
// loop for loop, as the reference for the heap-based implementation.
class RunCReference {
 public:
  explicit RunCReference(const std::string& path) {
    auto data = protocols::ReadFileToString(path);
    if (!data.ok()) {
      ADD_FAILURE() << data.status();
      return;
    }
    size_t offset = 4;
    while (offset < data->size()) {
      float score;
      int32_t len;
      std::memcpy(&score, data->data() + offset, 4);
      std::memcpy(&len, data->data() + offset + 4, 4);
      offset += 8;
      vocab_.emplace_back(data->data() + offset, len);
      scores_.push_back(score);
      offset += len;
    }
    for (size_t i = 0; i < vocab_.size(); ++i) index_.emplace(vocab_[i], static_cast<int>(i));
  }

  std::vector<int32_t> Encode(const std::string& text, bool bos, bool eos) const {
    std::vector<int32_t> tokens;
    if (bos) tokens.push_back(1);
    if (!text.empty()) tokens.push_back(Lookup(" "));
    std::string buffer;
    for (size_t i = 0; i < text.size(); ++i) {
      unsigned char c = text[i];
      if ((c & 0xC0) != 0x80) buffer.clear();
      buffer.push_back(static_cast<char>(c));
      unsigned char next = i + 1 < text.size() ? text[i + 1] : 0;
      if ((next & 0xC0) == 0x80 && buffer.size() < 4) continue;
      int id = Lookup(buffer);
      if (id != -1) {
        tokens.push_back(id);
      } else {
        for (unsigned char b : buffer) tokens.push_back(b + 3);
      }
      buffer.clear();
    }
    while (true) {
      float best_score = -1e10f;
      int best_id = -1;
      int best_idx = -1;
      for (size_t i = 0; i + 1 < tokens.size(); ++i) {
        int id = Lookup(vocab_[tokens[i]] + vocab_[tokens[i + 1]]);
        if (id != -1 && scores_[id] > best_score) {
          best_score = scores_[id];
          best_id = id;
          best_idx = static_cast<int>(i);
        }
      }
      if (best_idx == -1) break;
      tokens[best_idx] = best_id;
      tokens.erase(tokens.begin() + best_idx + 1);
    }
    if (eos) tokens.push_back(2);
    return tokens;
  }

 private:
  int Lookup(const std::string& s) const {
    auto it = index_.find(s);
    return it == index_.end() ? -1 : it->second;
  }
  std::vector<std::string> vocab_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int> index_;
};

// Random text mixing English words, punctuation, multi-byte UTF-8 and, when
// `invalid_bytes`, stray continuation and lead bytes.
std::string RandomText(std::mt19937_64& rng, size_t words, bool invalid_bytes) {
  static const std::vector<std::string> kPieces = {
      "Once", "upon", "a", "time", "the", "little", "girl", "Lily", "played", "happy", "dog",
      ",", ".", "!", "?", "\n", "  ", "\t", "123", "7", "naïve", "café", "—", "日本語", "🙂",
      "ROMEO:", "Ünïcödé", "\"quoted\"", "it's", "'ll"};
  std::string text;
  for (size_t i = 0; i < words; ++i) {
    if (i > 0 && rng() % 3 != 0) text += ' ';
    text += kPieces[rng() % kPieces.size()];
    if (invalid_bytes && rng() % 7 == 0) text += static_cast<char>(0x80 + rng() % 0x7F);
  }
  return text;
}

TEST(TokenizerLlama2Test, LoadsTok512) {
  auto tokenizer = LoadTok512();
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->vocab_size(), 512);
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_EQ(tokenizer->eos_id(), 2);
  EXPECT_EQ(tokenizer->pad_id(), 2);
}

// Expected ids computed with a line-by-line transcription of run.c's encode.
TEST(TokenizerLlama2Test, EncodesLikeRunC) {
  auto tokenizer = LoadTok512();
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->Encode("Once upon a time, there was a little girl named Lily.", true, false),
            (std::vector<int32_t>{1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421,
                                  395, 317, 426}));
  EXPECT_EQ(tokenizer->Encode("Hello\nworld! 123", true, false),
            (std::vector<int32_t>{1, 346, 306, 414, 13, 424, 304, 341, 443, 410, 475, 479, 472}));
  // Accented letters are in the vocabulary; dashes, CJK and emoji fall back to bytes.
  EXPECT_EQ(tokenizer->Encode("naïve café — 日本語 🙂", true, false),
            (std::vector<int32_t>{1, 297, 412, 198, 178, 360, 280, 412, 431, 485, 410, 481, 410,
                                  233, 154, 168, 233, 159, 175, 235, 173, 161, 410, 243, 162, 156,
                                  133}));
  EXPECT_EQ(tokenizer->Encode("Once upon a time", false, true),
            (std::vector<int32_t>{403, 407, 261, 378, 2}));
  // No dummy prefix for empty text.
  EXPECT_EQ(tokenizer->Encode("", true, true), (std::vector<int32_t>{1, 2}));
  EXPECT_TRUE(tokenizer->Encode("", false, false).empty());
}

TEST(TokenizerLlama2Test, HeapMergeMatchesQuadraticReference) {
  auto tokenizer = LoadTok512();
  ASSERT_NE(tokenizer, nullptr);
  RunCReference reference(kTok512);
  std::mt19937_64 rng(20240611);
  for (int trial = 0; trial < 200; ++trial) {
    std::string text = RandomText(rng, 1 + rng() % 40, /*invalid_bytes=*/trial % 2 == 1);
    bool bos = rng() % 2 == 0;
    bool eos = rng() % 2 == 0;
    ASSERT_EQ(tokenizer->Encode(text, bos, eos), reference.Encode(text, bos, eos))
        << "text: " << text;
  }
}

TEST(TokenizerLlama2Test, DecodeRoundTripsAfterBos) {
  auto tokenizer = LoadTok512();
  ASSERT_NE(tokenizer, nullptr);
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 100; ++trial) {
    // Byte fallback makes even invalid UTF-8 round-trip.
    std::string text = RandomText(rng, 1 + rng() % 30, /*invalid_bytes=*/true);
    std::vector<int32_t> ids = tokenizer->Encode(text, true, true);
    for (int32_t id : ids) {
      ASSERT_GE(id, 0);
      ASSERT_LT(id, tokenizer->vocab_size());
    }
    EXPECT_EQ(tokenizer->Decode(ids), text);
  }
}

TEST(TokenizerLlama2Test, DecodeKeepsDummyPrefixWithoutBos) {
  auto tokenizer = LoadTok512();
  ASSERT_NE(tokenizer, nullptr);
  // run.c strips the leading space only right after BOS.
  EXPECT_EQ(tokenizer->Decode(tokenizer->Encode("Lily ran.", false, false)), " Lily ran.");
  // Byte tokens decode to raw bytes; out-of-range ids are skipped.
  EXPECT_EQ(tokenizer->Decode({3 + 0x41, 3 + 0x0A, 9999, -5}), "A\n");
}

TEST(TokenizerLlama2Test, HonoursExplicitVocabSize) {
  EXPECT_TRUE(LoadLlama2Tokenizer(kTok512, 512).ok());
  auto small = LoadLlama2Tokenizer(kTok512, 300);
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ((*small)->vocab_size(), 300);
  auto too_many = LoadLlama2Tokenizer(kTok512, 513);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_many.status().message().find("truncated entry 512"), std::string::npos)
      << too_many.status();
  EXPECT_EQ(LoadLlama2Tokenizer(kTok512, 100).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TokenizerLlama2Test, ReportsMalformedFiles) {
  EXPECT_EQ(LoadTokenizer("assets/stories260K/missing.bin").status().code(),
            absl::StatusCode::kNotFound);
  auto original = protocols::ReadFileToString(kTok512);
  ASSERT_TRUE(original.ok());
  // Entry 5 claims a huge length.
  std::string corrupt = *original;
  size_t offset = 4;
  for (int i = 0; i < 5; ++i) {
    int32_t len;
    std::memcpy(&len, corrupt.data() + offset + 4, 4);
    offset += 8 + len;
  }
  int32_t huge = 1 << 30;
  std::memcpy(corrupt.data() + offset + 4, &huge, 4);
  std::string path = ::testing::TempDir() + "/corrupt_tokenizer.bin";
  ASSERT_TRUE(protocols::WriteFileAtomic(path, corrupt).ok());
  auto status = LoadTokenizer(path).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("entry 5"), std::string::npos) << status;
  EXPECT_NE(status.message().find("corrupt_tokenizer.bin"), std::string::npos) << status;
}

TEST(TokenizerLoadTest, RejectsUnknownExtension) {
  auto status = LoadTokenizer("assets/tinyshakespeare/input.txt").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("input.txt"), std::string::npos) << status;
}

}  // namespace
}  // namespace fedfm::model
