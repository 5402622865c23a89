#include "model/tokenizer_hf.h"

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/tokenizer.h"
#include "model/tokenizer_unicode.h"
#include "nlohmann/json.hpp"
#include "protocols/file_util.h"

namespace fedfm::model {
namespace {

using nlohmann::json;
using tokenizer_internal::SplitPattern;
using tokenizer_internal::SplitPretokens;

// A hand-made byte-level BPE: bytes have id = byte value, 16 merges
// (ids 256..271, "Ġ t", "h e", "Ġt he", "l l", "e ll", "H ell", "Hell o",
// "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "i n", "in g", "Ċ Ċ", "1 2" in rank
// order, alternately in string and array form), Llama-3 split regex, added
// tokens 300 <|begin_of_text|> (special), 301 <|end_of_text|> (special),
// 302 <tool> (normal), 303 <mask> (special, lstrip), 304 "<|begin_of_text|>x"
// (normal), and a template adding BOS 300.
constexpr char kTinyBpe[] = "tests/fixtures/tokenizer_tiny_bpe/tokenizer.json";

json ReadJson(const std::string& path) {
  auto text = protocols::ReadFileToString(path);
  EXPECT_TRUE(text.ok()) << text.status();
  return json::parse(text.ok() ? *text : std::string("null"));
}

// Writes `tokenizer` (and `config` unless null) into a fresh directory and
// loads it.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadVariant(const std::string& name,
                                                       const json& tokenizer,
                                                       const json& config = nullptr) {
  std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / name;
  std::filesystem::create_directories(dir);
  std::filesystem::remove(dir / "tokenizer_config.json");
  EXPECT_TRUE(protocols::WriteFileAtomic(dir / "tokenizer.json", tokenizer.dump()).ok());
  if (!config.is_null()) {
    EXPECT_TRUE(protocols::WriteFileAtomic(dir / "tokenizer_config.json", config.dump()).ok());
  }
  return LoadTokenizer(dir);
}

std::unique_ptr<Tokenizer> LoadTiny() {
  auto tokenizer = LoadTokenizer(kTinyBpe);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(tokenizer).value() : nullptr;
}

TEST(TokenizerPretokenizeTest, MatchesIndependentRegexEngine) {
  // Splits computed by the Python `regex` module (generate.py beside the file).
  json cases = ReadJson("tests/fixtures/tokenizer_pretok/cases.json");
  ASSERT_TRUE(cases.is_array());
  ASSERT_GT(cases.size(), 100u);
  const std::pair<const char*, SplitPattern> kPatterns[] = {
      {"gpt2", SplitPattern::kGpt2}, {"llama3", SplitPattern::kLlama3}, {"qwen2", SplitPattern::kQwen2}};
  for (const json& c : cases) {
    const std::string text = c["text"].get<std::string>();
    for (const auto& [name, pattern] : kPatterns) {
      std::vector<std::string> pieces;
      for (auto [begin, end] : SplitPretokens(text, pattern)) {
        pieces.push_back(text.substr(begin, end - begin));
      }
      EXPECT_EQ(pieces, c[name].get<std::vector<std::string>>()) << name << " on " << json(text);
    }
  }
}

TEST(TokenizerPretokenizeTest, CoversInvalidUtf8) {
  const std::string text = "ab\xff\xfe c\xc3";
  for (SplitPattern pattern : {SplitPattern::kGpt2, SplitPattern::kLlama3, SplitPattern::kQwen2}) {
    size_t covered = 0;
    for (auto [begin, end] : SplitPretokens(text, pattern)) {
      EXPECT_EQ(begin, covered);
      EXPECT_GT(end, begin);
      covered = end;
    }
    EXPECT_EQ(covered, text.size());
  }
}

TEST(TokenizerHfTest, LoadsTinyFixture) {
  auto tokenizer = LoadTiny();
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->vocab_size(), 305);
  EXPECT_EQ(tokenizer->bos_id(), 300);  // from the post_processor template
  EXPECT_EQ(tokenizer->eos_id(), 301);  // by name: <|end_of_text|>
  EXPECT_EQ(tokenizer->pad_id(), 301);  // no pad token: EOS
}

// Expected ids derived by hand from the merge list (see kTinyBpe).
TEST(TokenizerHfTest, EncodesByMergeRank) {
  auto tokenizer = LoadTiny();
  ASSERT_NE(tokenizer, nullptr);
  // "Hello": l l -> ll, e ll -> ell, H ell -> Hell, Hell o -> Hello (262);
  // " world": Ġ w (r7), o r (r8), Ġw or (r9), l d (r10), Ġwor ld -> 267.
  EXPECT_EQ(tokenizer->Encode("Hello world", true, false), (std::vector<int32_t>{300, 262, 267}));
  EXPECT_EQ(tokenizer->Encode("Hello world", false, true), (std::vector<int32_t>{262, 267, 301}));
  // "the" has no "t he" merge; " thing" -> Ġt h in g -> Ġt h ing.
  EXPECT_EQ(tokenizer->Encode("the thing", false, false),
            (std::vector<int32_t>{116, 257, 256, 104, 269}));
  // \s*[\r\n]+ keeps "\n\n" whole -> ĊĊ (270).
  EXPECT_EQ(tokenizer->Encode("a\n\nb", false, false), (std::vector<int32_t>{97, 270, 98}));
  // \p{N}{1,3}: "123" "45".
  EXPECT_EQ(tokenizer->Encode("12345", false, false), (std::vector<int32_t>{271, 51, 52, 53}));
  // Case-insensitive contraction: "IT" "'S".
  EXPECT_EQ(tokenizer->Encode("IT'S", false, false), (std::vector<int32_t>{73, 84, 39, 83}));
  // Multi-byte UTF-8 stays byte-level.
  EXPECT_EQ(tokenizer->Encode("caf\xc3\xa9", false, false),
            (std::vector<int32_t>{99, 97, 102, 195, 169}));
  EXPECT_TRUE(tokenizer->Encode("", false, false).empty());
}

TEST(TokenizerHfTest, MatchesAddedTokensBeforeBpe) {
  auto tokenizer = LoadTiny();
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->Encode("x<|end_of_text|>y", false, false),
            (std::vector<int32_t>{120, 301, 121}));
  EXPECT_EQ(tokenizer->Encode("a<tool>b", false, false), (std::vector<int32_t>{97, 302, 98}));
  // lstrip eats the spaces before <mask>.
  EXPECT_EQ(tokenizer->Encode("Hello   <mask>!", false, false),
            (std::vector<int32_t>{262, 303, 33}));
  // Tokens with normalized=false split first, so the longer normalized
  // "<|begin_of_text|>x" never matches.
  EXPECT_EQ(tokenizer->Encode("<|begin_of_text|>x", false, false),
            (std::vector<int32_t>{300, 120}));
}

TEST(TokenizerHfTest, DecodeSkipsSpecialTokensAndRoundTrips) {
  auto tokenizer = LoadTiny();
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->Decode({300, 262, 267, 301}), "Hello world");
  EXPECT_EQ(tokenizer->Decode({97, 302, 98, 303, 999, -1}), "a<tool>b");
  std::mt19937_64 rng(99);
  const std::vector<std::string> pieces = {"Hello", " world", "the", "thing", "\n", "\n\n", "  ",
                                           "12345", "IT'S", "caf\xc3\xa9", "\xe6\x97\xa5", "!",
                                           "\t", "\xff", "\x80"};
  for (int trial = 0; trial < 200; ++trial) {
    std::string text;
    for (int k = 1 + rng() % 12; k > 0; --k) text += pieces[rng() % pieces.size()];
    std::vector<int32_t> ids = tokenizer->Encode(text, true, true);
    for (int32_t id : ids) {
      ASSERT_GE(id, 0);
      ASSERT_LT(id, tokenizer->vocab_size());
    }
    EXPECT_EQ(tokenizer->Decode(ids), text);
  }
}

TEST(TokenizerHfTest, ReadsTokenizerConfig) {
  json tokenizer = ReadJson(kTinyBpe);
  auto loaded = LoadVariant("tiny_with_config", tokenizer,
                            json{{"bos_token", nullptr},
                                 {"eos_token", json{{"content", "<tool>"}}},
                                 {"pad_token", "<mask>"}});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->bos_id(), -1);
  EXPECT_EQ((*loaded)->eos_id(), 302);
  EXPECT_EQ((*loaded)->pad_id(), 303);
  EXPECT_EQ((*loaded)->Encode("Hello", true, true), (std::vector<int32_t>{262, 302}));

  auto bad = LoadVariant("tiny_bad_config", tokenizer, json{{"eos_token", "<nope>"}});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("eos_token"), std::string::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("<nope>"), std::string::npos) << bad.status();
}

TEST(TokenizerHfTest, IgnoreMergesTakesWholeWords) {
  json tokenizer = ReadJson(kTinyBpe);
  tokenizer["model"]["vocab"]["\xc4\xa0thing"] = 400;  // "Ġthing", no merge path to it
  auto plain = LoadVariant("tiny_whole_word", tokenizer);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ((*plain)->Encode(" thing", false, false), (std::vector<int32_t>{256, 104, 269}));
  tokenizer["model"]["ignore_merges"] = true;
  auto ignoring = LoadVariant("tiny_ignore_merges", tokenizer);
  ASSERT_TRUE(ignoring.ok()) << ignoring.status();
  EXPECT_EQ((*ignoring)->Encode(" thing", false, false), (std::vector<int32_t>{400}));
  EXPECT_EQ((*ignoring)->vocab_size(), 401);
  EXPECT_EQ((*ignoring)->Decode({400}), " thing");
}

TEST(TokenizerHfTest, Gpt2ByteLevelWithPrefixSpace) {
  json tokenizer = ReadJson(kTinyBpe);
  tokenizer["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true},
                                {"trim_offsets", true}, {"use_regex", true}};
  tokenizer["post_processor"] = {{"type", "ByteLevel"}};
  auto loaded = LoadVariant("tiny_gpt2", tokenizer);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->bos_id(), -1);
  // " Hello" " world": Ġ then Hello (no "Ġ H" merge), Ġworld.
  EXPECT_EQ((*loaded)->Encode("Hello world", true, false), (std::vector<int32_t>{32, 262, 267}));
  // GPT-2's \p{N}+ keeps digit runs whole: " 12345" -> Ġ 12 3 4 5.
  EXPECT_EQ((*loaded)->Encode("12345", false, false), (std::vector<int32_t>{32, 271, 51, 52, 53}));
}

// Reference ids from the Python `tokenizers` / `transformers` libraries for
// small tokenizers of the Llama-3 and Qwen2 layouts (tools/make_hf_fixtures.py):
// `ids` with add_special_tokens, `ids_no_special` without, `decoded` =
// decode(ids_no_special, skip_special_tokens=True).
TEST(TokenizerHfTest, MatchesTransformersOnLlama3AndQwen2Fixtures) {
  struct Fixture {
    const char* dir;
    int32_t bos;
    int32_t eos;
    int32_t pad;
  };
  for (const Fixture& fixture : {Fixture{"tests/fixtures/hf_llama", 480, 481, 481},
                                 Fixture{"tests/fixtures/hf_qwen2", -1, 480, 480}}) {
    SCOPED_TRACE(fixture.dir);
    auto tokenizer = LoadTokenizer(fixture.dir);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    EXPECT_EQ((*tokenizer)->bos_id(), fixture.bos);
    EXPECT_EQ((*tokenizer)->eos_id(), fixture.eos);
    EXPECT_EQ((*tokenizer)->pad_id(), fixture.pad);
    json cases = ReadJson(std::string(fixture.dir) + "/tokenizer_cases.json");
    ASSERT_TRUE(cases.is_array());
    ASSERT_GE(cases.size(), 10u);
    for (const json& c : cases) {
      const std::string text = c["text"].get<std::string>();
      const auto ids = c["ids"].get<std::vector<int32_t>>();
      const auto plain = c["ids_no_special"].get<std::vector<int32_t>>();
      EXPECT_EQ((*tokenizer)->Encode(text, /*add_bos=*/true, false), ids) << json(text);
      EXPECT_EQ((*tokenizer)->Encode(text, false, false), plain) << json(text);
      EXPECT_EQ((*tokenizer)->Decode(plain), c["decoded"].get<std::string>()) << json(text);
    }
  }
}

TEST(TokenizerHfTest, ReportsUnsupportedAndMalformedFiles) {
  json base = ReadJson(kTinyBpe);
  {
    json t = base;
    t["model"]["merges"][3] = "l q";
    auto status = LoadVariant("bad_merge", t).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(status.message().find("model.merges[3]"), std::string::npos) << status;
  }
  {
    json t = base;
    t["model"]["type"] = "WordPiece";
    EXPECT_EQ(LoadVariant("wordpiece", t).status().code(), absl::StatusCode::kUnimplemented);
  }
  {
    json t = base;
    t["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+";
    auto status = LoadVariant("other_regex", t).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented);
    EXPECT_NE(status.message().find("pre_tokenizer.pretokenizers[0].pattern.Regex"),
              std::string::npos)
        << status;
  }
  {
    json t = base;
    t["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xe2\x96\x81"}};
    EXPECT_EQ(LoadVariant("metaspace", t).status().code(), absl::StatusCode::kUnimplemented);
  }
  {
    json t = base;
    t["model"]["vocab"].erase("A");
    auto status = LoadVariant("missing_byte", t).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(status.message().find("byte 65"), std::string::npos) << status;
  }
  std::string path = ::testing::TempDir() + "/broken_tokenizer.json";
  ASSERT_TRUE(protocols::WriteFileAtomic(path, std::string("{\"model\": [")).ok());
  auto status = LoadTokenizer(path).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("broken_tokenizer.json"), std::string::npos) << status;
}

}  // namespace
}  // namespace fedfm::model
