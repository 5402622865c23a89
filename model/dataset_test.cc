#include "model/dataset.h"

#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/tokenizer.h"
#include "protocols/file_util.h"

namespace fedfm::model {
namespace {

constexpr char kShakespeare[] = "assets/tinyshakespeare/input.txt";
constexpr char kSms[] = "assets/sms_spam/SMSSpamCollection";
constexpr char kSpamAssassin[] = "assets/spamassassin/spamassassin_2000chars.tsv.gz";
constexpr char kAgNewsSample[] = "tests/fixtures/dataset_samples/ag_news_sample.csv";
constexpr char kSst2Sample[] = "tests/fixtures/dataset_samples/sst2_sample.tsv";
constexpr char kPrompts[] = "tests/fixtures/dataset_samples/prompts.jsonl";

std::string WriteTemp(const std::string& name, const std::string& contents) {
  std::string path = ::testing::TempDir() + "/" + name;
  EXPECT_TRUE(protocols::WriteFileAtomic(path, contents).ok());
  return path;
}

std::unique_ptr<Tokenizer> Tok512() {
  auto tokenizer = LoadTokenizer("assets/stories260K/tok512.bin");
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(tokenizer).value() : nullptr;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// --- Shakespeare ---------------------------------------------------------------

TEST(DatasetShakespeareTest, SplitsInputBySpeaker) {
  auto texts = ReadShakespeareBySpeaker(kShakespeare);
  ASSERT_TRUE(texts.ok()) << texts.status();
  EXPECT_TRUE(texts->warnings.empty());
  ASSERT_EQ(texts->groups.size(), 309u);
  int speeches = 0;
  std::set<std::string> names;
  for (const GroupedText& group : texts->groups) {
    speeches += group.num_parts;
    names.insert(group.group);
    // Every speech of the group starts with its speaker line.
    EXPECT_EQ(group.text.rfind(group.group + ":\n", 0), 0u) << group.group;
  }
  EXPECT_EQ(speeches, 7222);
  EXPECT_EQ(names.size(), 309u);
  EXPECT_TRUE(names.count("ROMEO"));
  EXPECT_TRUE(names.count("First Citizen"));
  EXPECT_EQ(texts->groups[0].group, "First Citizen");  // order of first appearance
  const std::string first_two =
      "First Citizen:\nBefore we proceed any further, hear me speak.\n\nFirst Citizen:\nYou are "
      "all resolved rather to die than to famish?\n\n";
  EXPECT_EQ(texts->groups[0].text.substr(0, first_two.size()), first_two);
  // Nothing lost: the groups hold every byte of the file once, except that
  // the file's two doubled empty lines count once each and the last speech
  // gets its closing empty line.
  auto raw = protocols::ReadFileToString(kShakespeare);
  ASSERT_TRUE(raw.ok());
  size_t total = 0;
  for (const GroupedText& group : texts->groups) total += group.text.size();
  EXPECT_EQ(total, raw->size() - 2 + 1);
}

TEST(DatasetShakespeareTest, ReportsBlocksWithoutSpeaker) {
  const std::string text = "ROMEO:\nBut soft!\n\nno speaker here\nstill none\n\nJULIET:\nAy me!\n\nROMEO:\nShe speaks.\n";
  auto strict = SplitShakespeareBySpeaker(text, "play.txt");
  EXPECT_EQ(strict.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(std::string(strict.status().message()), "play.txt:4: expected a speaker line"))
      << strict.status();

  ReadOptions skip;
  skip.skip_bad_rows = true;
  auto lenient = SplitShakespeareBySpeaker(text, "play.txt", skip);
  ASSERT_TRUE(lenient.ok()) << lenient.status();
  ASSERT_EQ(lenient->warnings.size(), 1u);
  EXPECT_TRUE(Contains(lenient->warnings[0], "play.txt:4:"));
  ASSERT_EQ(lenient->groups.size(), 2u);
  EXPECT_EQ(lenient->groups[0].group, "ROMEO");
  EXPECT_EQ(lenient->groups[0].num_parts, 2);
  EXPECT_EQ(lenient->groups[0].text, "ROMEO:\nBut soft!\n\nROMEO:\nShe speaks.\n\n");
  EXPECT_EQ(lenient->groups[1].text, "JULIET:\nAy me!\n\n");
}

// --- Labelled files ---------------------------------------------------------------

TEST(DatasetLabeledTest, ReadsSmsSpamCollection) {
  auto sms = ReadLabeledTsv(kSms);
  ASSERT_TRUE(sms.ok()) << sms.status();
  ASSERT_EQ(sms->rows.size(), 5574u);
  EXPECT_EQ(sms->label_names, (std::vector<std::string>{"ham", "spam"}));
  size_t spam = std::count_if(sms->rows.begin(), sms->rows.end(),
                              [](const LabeledText& row) { return row.label == 1; });
  EXPECT_EQ(spam, 747u);
  EXPECT_EQ(sms->rows[0].label, 0);
  EXPECT_EQ(sms->rows[0].text.rfind("Go until jurong point", 0), 0u);
  EXPECT_EQ(sms->rows[2].label, 1);
  EXPECT_EQ(sms->rows[2].source, std::string(kSms) + ":3");
}

TEST(DatasetLabeledTest, TsvBadRowsNameFileAndLine) {
  const std::string path = WriteTemp("SMSSpamCollection",
                                     "ham\tfine\nspam\tWIN NOW\nno tab on this line\n\nham\t\nham\tok\n");
  auto strict = ReadLabeledTsv(path);
  EXPECT_EQ(strict.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(std::string(strict.status().message()), "SMSSpamCollection:3: expected label<TAB>text"))
      << strict.status();

  ReadOptions skip;
  skip.skip_bad_rows = true;
  auto lenient = ReadLabeledTsv(path, skip);
  ASSERT_TRUE(lenient.ok()) << lenient.status();
  EXPECT_EQ(lenient->rows.size(), 3u);
  ASSERT_EQ(lenient->warnings.size(), 2u);
  EXPECT_TRUE(Contains(lenient->warnings[0], "SMSSpamCollection:3: expected label<TAB>text"));
  EXPECT_TRUE(Contains(lenient->warnings[1], "SMSSpamCollection:5: empty text"));
  EXPECT_EQ(lenient->rows[2].source, path + ":6");

  // A fixed label set makes other labels bad rows.
  ReadOptions fixed = skip;
  fixed.label_names = {"spam", "ham"};
  auto relabeled = ReadLabeledTsv(WriteTemp("labels.tsv", "ham\ta\nspam\tb\neggs\tc\n"), fixed);
  ASSERT_TRUE(relabeled.ok());
  EXPECT_EQ(relabeled->label_names, fixed.label_names);
  ASSERT_EQ(relabeled->rows.size(), 2u);
  EXPECT_EQ(relabeled->rows[0].label, 1);
  EXPECT_EQ(relabeled->rows[1].label, 0);
  ASSERT_EQ(relabeled->warnings.size(), 1u);
  EXPECT_TRUE(Contains(relabeled->warnings[0], ":3: unknown label \"eggs\""));
}

TEST(DatasetLabeledTest, ReadsSst2WithHeaderAndNumericLabels) {
  auto sst2 = ReadLabeledTsv(kSst2Sample);
  ASSERT_TRUE(sst2.ok()) << sst2.status();
  ASSERT_EQ(sst2->rows.size(), 3u);
  EXPECT_EQ(sst2->label_names, (std::vector<std::string>{"0", "1"}));
  EXPECT_EQ(sst2->rows[0].label, 1);
  EXPECT_EQ(sst2->rows[1].label, 0);
  EXPECT_EQ(sst2->rows[1].text, "flat and dull .");
  EXPECT_EQ(sst2->rows[0].source, std::string(kSst2Sample) + ":2");
  // Integer labels sort numerically: "10" after "9".
  auto many = ReadLabeledTsv(WriteTemp("many.tsv", "10\ta\n9\tb\n2\tc\n"));
  ASSERT_TRUE(many.ok());
  EXPECT_EQ(many->label_names, (std::vector<std::string>{"2", "9", "10"}));
  ReadOptions first_two;
  first_two.max_rows = 2;
  auto limited = ReadLabeledTsv(kSst2Sample, first_two);
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(limited->rows.size(), 2u);
}

TEST(DatasetLabeledTest, ReadsAgNewsCsvWithQuoting) {
  auto news = ReadLabeledCsv(kAgNewsSample);
  ASSERT_TRUE(news.ok()) << news.status();
  ASSERT_EQ(news->rows.size(), 5u);
  EXPECT_EQ(news->label_names, (std::vector<std::string>{"1", "2", "3", "4"}));
  EXPECT_EQ(news->rows[0].label, 2);
  EXPECT_EQ(news->rows[0].text,
            "Markets rally on rate hopes Shares rose on Tuesday as investors bet the central bank "
            "would hold rates steady.");
  EXPECT_EQ(news->rows[1].text,
            "Local team wins \"derby\" at home The home side scored twice in the second half to win "
            "the \"derby\" 2-1.");
  EXPECT_TRUE(Contains(news->rows[2].text, "phones,\nwith a second line"));
  EXPECT_EQ(news->rows[3].source, std::string(kAgNewsSample) + ":5");  // after a 2-line record
  EXPECT_EQ(news->rows[4].text, "Unquoted title Unquoted description with a comma-free sentence");
  EXPECT_EQ(news->rows[4].label, 3);
}

TEST(DatasetLabeledTest, CsvBadRowsResumeOnTheNextLine) {
  const std::string path = WriteTemp("news.csv",
                                     "\"class\",\"title\",\"description\"\n"
                                     "\"1\",\"ok\",\"fine\"\n"
                                     "\"2\",\"broken \"quote\" here\",\"x\"\n"
                                     "\"3\"\n"
                                     "\"4\",\"unterminated, rest\n"
                                     "\"1\",\"after\",\"the bad ones\"\n");
  auto strict = ReadLabeledCsv(path);
  EXPECT_EQ(strict.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(std::string(strict.status().message()), "news.csv:3: unexpected character"))
      << strict.status();
  ReadOptions skip;
  skip.skip_bad_rows = true;
  auto lenient = ReadLabeledCsv(path, skip);
  ASSERT_TRUE(lenient.ok()) << lenient.status();
  ASSERT_EQ(lenient->warnings.size(), 3u);
  EXPECT_TRUE(Contains(lenient->warnings[0], "news.csv:3:"));
  EXPECT_TRUE(Contains(lenient->warnings[1], "news.csv:4: expected"));
  // The open quote runs into line 6 and closes at its first quote.
  EXPECT_TRUE(Contains(lenient->warnings[2], "news.csv:5: unexpected character '1'"))
      << lenient->warnings[2];
  ASSERT_EQ(lenient->rows.size(), 2u);
  EXPECT_EQ(lenient->rows[1].text, "after the bad ones");
  EXPECT_EQ(lenient->rows[1].source, path + ":6");

  auto unterminated = ReadLabeledCsv(WriteTemp("open.csv", "\"1\",\"a\"\n\"2\",\"never closed\n"));
  EXPECT_TRUE(Contains(std::string(unterminated.status().message()), "open.csv:2: unterminated quoted field"))
      << unterminated.status();
}

TEST(DatasetLabeledTest, ReadsSpamAssassinGzipWithGroups) {
  auto mails = ReadSpamAssassin(kSpamAssassin);
  ASSERT_TRUE(mails.ok()) << mails.status();
  EXPECT_TRUE(mails->warnings.empty());
  ASSERT_EQ(mails->rows.size(), 6046u);
  EXPECT_EQ(mails->label_names, (std::vector<std::string>{"ham", "spam"}));
  std::map<std::pair<std::string, int32_t>, int> counts;
  for (const LabeledText& row : mails->rows) ++counts[{row.group, row.label}];
  EXPECT_EQ(counts, (std::map<std::pair<std::string, int32_t>, int>{{{"easy-ham-1", 0}, 2500},
                                                                   {{"easy-ham-2", 0}, 1400},
                                                                   {{"hard-ham-1", 0}, 250},
                                                                   {{"spam-1", 1}, 500},
                                                                   {{"spam-2", 1}, 1396}}));
  // Subject, newline, body; doubled quotes inside the quoted body are undone.
  EXPECT_EQ(mails->rows[0].text.rfind("Re: New Sequences Window\nDate: Wed, 21 Aug 2002", 0), 0u);
  EXPECT_TRUE(Contains(mails->rows[0].text, "That's where the \"1 hit\" comes from"));
  EXPECT_EQ(mails->rows[0].source, std::string(kSpamAssassin) + ":2");
}

TEST(DatasetLabeledTest, GzipDetectionAndCorruption) {
  auto data = protocols::ReadFileToString(kSpamAssassin);
  ASSERT_TRUE(data.ok());
  auto plain = ReadMaybeGzip(kSpamAssassin);
  ASSERT_TRUE(plain.ok()) << plain.status();
  // The same rows from an uncompressed copy.
  auto from_plain = ReadSpamAssassin(WriteTemp("spam.tsv", plain->substr(0, plain->find('\n', 50000))));
  ASSERT_TRUE(from_plain.ok()) << from_plain.status();
  EXPECT_GT(from_plain->rows.size(), 10u);
  // Truncated gzip is an error naming the file.
  auto truncated = ReadMaybeGzip(WriteTemp("truncated.tsv.gz", data->substr(0, data->size() / 2)));
  EXPECT_EQ(truncated.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(std::string(truncated.status().message()), "truncated.tsv.gz")) << truncated.status();
  // Two concatenated gzip members read as one file.
  auto make_gzip = [](const std::string& text) {
    z_stream stream{};
    EXPECT_EQ(deflateInit2(&stream, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    std::string out(deflateBound(&stream, text.size()) + 64, '\0');
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
    stream.avail_in = static_cast<uInt>(text.size());
    stream.next_out = reinterpret_cast<Bytef*>(out.data());
    stream.avail_out = static_cast<uInt>(out.size());
    EXPECT_EQ(deflate(&stream, Z_FINISH), Z_STREAM_END);
    out.resize(stream.total_out);
    deflateEnd(&stream);
    return out;
  };
  auto joined = ReadMaybeGzip(WriteTemp("two.gz", make_gzip("ham\tone\n") + make_gzip("spam\ttwo\n")));
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(*joined, "ham\tone\nspam\ttwo\n");
  EXPECT_EQ(ReadMaybeGzip("assets/missing.gz").status().code(), absl::StatusCode::kNotFound);
}

TEST(DatasetLabeledTest, SpamAssassinBadRows) {
  const std::string path = WriteTemp("mails.tsv",
                                     "label\tgroup\tid\tsubject\tbody\n"
                                     "ham\teasy-ham-1\t1\tHi\t\"a \"\"quoted\"\" body\"\n"
                                     "spam\tspam-1\t2\tonly four fields\n"
                                     "spam\t\t3\tno group\tbody\n");
  ReadOptions skip;
  skip.skip_bad_rows = true;
  auto mails = ReadSpamAssassin(path, skip);
  ASSERT_TRUE(mails.ok()) << mails.status();
  ASSERT_EQ(mails->rows.size(), 1u);
  EXPECT_EQ(mails->rows[0].text, "Hi\na \"quoted\" body");
  ASSERT_EQ(mails->warnings.size(), 2u);
  EXPECT_TRUE(Contains(mails->warnings[0], "mails.tsv:3: expected 5 fields"));
  EXPECT_TRUE(Contains(mails->warnings[1], "mails.tsv:4: empty group"));
  EXPECT_FALSE(ReadSpamAssassin(path).ok());
}

// --- JSONL --------------------------------------------------------------------------

TEST(DatasetJsonlTest, ReadsPromptResponsePairs) {
  auto pairs = ReadPromptResponseJsonl(kPrompts);
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  ASSERT_EQ(pairs->rows.size(), 3u);
  EXPECT_EQ(pairs->rows[0].prompt, "Q: What color is the sky?\nA:");
  EXPECT_EQ(pairs->rows[0].response, "The sky is blue.");
  EXPECT_EQ(pairs->rows[0].group, "alice");
  EXPECT_EQ(pairs->rows[1].group, "");
  EXPECT_EQ(pairs->rows[2].source, std::string(kPrompts) + ":4");

  const std::string path = WriteTemp("bad.jsonl",
                                     "{\"prompt\": \"a\", \"response\": \"b\"}\n"
                                     "{\"prompt\": \"a\"\n"
                                     "{\"prompt\": \"a\", \"response\": 3}\n"
                                     "[1, 2]\n"
                                     "{\"prompt\": \"a\", \"response\": \"\"}\n");
  auto strict = ReadPromptResponseJsonl(path);
  EXPECT_TRUE(Contains(std::string(strict.status().message()), "bad.jsonl:2: expected a JSON object"))
      << strict.status();
  ReadOptions skip;
  skip.skip_bad_rows = true;
  auto lenient = ReadPromptResponseJsonl(path, skip);
  ASSERT_TRUE(lenient.ok());
  EXPECT_EQ(lenient->rows.size(), 1u);
  ASSERT_EQ(lenient->warnings.size(), 4u);
  EXPECT_TRUE(Contains(lenient->warnings[1], "bad.jsonl:3: expected string fields"));
  EXPECT_TRUE(Contains(lenient->warnings[3], "bad.jsonl:5: empty \"response\""));
}

// --- Examples -------------------------------------------------------------------------

TEST(DatasetExamplesTest, LmWindowsShiftTargetsByOne) {
  std::vector<int32_t> ids(21);
  std::iota(ids.begin(), ids.end(), 100);
  WindowOptions options;
  options.seq_len = 4;
  std::vector<Example> windows = MakeLmWindows(ids, options, "g");
  ASSERT_EQ(windows.size(), 5u);  // starts 0, 4, 8, 12, 16
  for (size_t k = 0; k < windows.size(); ++k) {
    ASSERT_EQ(windows[k].tokens.size(), 4u);
    for (size_t t = 0; t < 4; ++t) {
      EXPECT_EQ(windows[k].tokens[t], 100 + static_cast<int32_t>(4 * k + t));
      EXPECT_EQ(windows[k].targets[t], 101 + static_cast<int32_t>(4 * k + t));
    }
    EXPECT_EQ(windows[k].group, "g");
    EXPECT_EQ(windows[k].label, -1);
  }
  options.stride = 3;
  EXPECT_EQ(MakeLmWindows(ids, options).size(), 6u);  // starts 0..15 step 3
  // keep_tail: 23 ids -> 5 full windows and a 2-token tail.
  ids.push_back(121);
  ids.push_back(122);
  options.stride = 0;
  options.keep_tail = true;
  windows = MakeLmWindows(ids, options);
  ASSERT_EQ(windows.size(), 6u);
  EXPECT_EQ(windows.back().tokens, (std::vector<int32_t>{120, 121}));
  EXPECT_EQ(windows.back().targets, (std::vector<int32_t>{121, 122}));
  options.keep_tail = false;
  EXPECT_EQ(MakeLmWindows(ids, options).size(), 5u);
  EXPECT_TRUE(MakeLmWindows(std::vector<int32_t>{1, 2, 3}, options).empty());
}

TEST(DatasetExamplesTest, ShakespeareWindowsStayWithinTheirSpeaker) {
  auto tokenizer = Tok512();
  ASSERT_NE(tokenizer, nullptr);
  auto texts = ReadShakespeareBySpeaker(kShakespeare);
  ASSERT_TRUE(texts.ok());
  // A few speakers keep the test fast.
  GroupedTexts some;
  for (const GroupedText& group : texts->groups) {
    if (group.group == "ROMEO" || group.group == "JULIET" || group.group == "Nurse") {
      some.groups.push_back(group);
    }
  }
  ASSERT_EQ(some.groups.size(), 3u);
  WindowOptions options;
  options.seq_len = 32;
  std::vector<Example> examples = MakeLmExamples(*tokenizer, some, options);
  std::map<std::string, size_t> per_speaker;
  for (const Example& example : examples) ++per_speaker[example.group];
  ASSERT_EQ(per_speaker.size(), 3u);
  for (const GroupedText& group : some.groups) {
    std::vector<int32_t> ids = tokenizer->Encode(group.text, true, false);
    EXPECT_EQ(per_speaker[group.group], (ids.size() - 1) / 32) << group.group;
  }
  // The first ROMEO window starts with BOS and decodes to his first line.
  const Example* romeo = nullptr;
  for (const Example& example : examples) {
    if (example.group == "ROMEO") {
      romeo = &example;
      break;
    }
  }
  ASSERT_NE(romeo, nullptr);
  EXPECT_EQ(romeo->tokens[0], tokenizer->bos_id());
  EXPECT_EQ(tokenizer->Decode(romeo->tokens).rfind("ROMEO:\n", 0), 0u);
}

TEST(DatasetExamplesTest, ClassificationExamplesTruncateAndKeepLabels) {
  auto tokenizer = Tok512();
  ASSERT_NE(tokenizer, nullptr);
  LabeledTexts texts;
  texts.rows = {{"short", 1, "g1", "x:1"}, {std::string(500, 'a') + " long text", 0, "g2", "x:2"}};
  ClassificationOptions options;
  options.max_len = 16;
  std::vector<Example> examples = MakeClassificationExamples(*tokenizer, texts, options);
  ASSERT_EQ(examples.size(), 2u);
  EXPECT_EQ(examples[0].tokens, tokenizer->Encode("short", true, false));
  EXPECT_EQ(examples[0].label, 1);
  EXPECT_EQ(examples[0].group, "g1");
  EXPECT_TRUE(examples[0].targets.empty());
  EXPECT_EQ(examples[1].tokens.size(), 16u);
  EXPECT_EQ(examples[1].label, 0);
}

TEST(DatasetExamplesTest, PromptResponseLossOnlyOnResponse) {
  auto tokenizer = Tok512();
  ASSERT_NE(tokenizer, nullptr);
  auto pairs = ReadPromptResponseJsonl(kPrompts);
  ASSERT_TRUE(pairs.ok());
  std::vector<Example> examples = MakePromptResponseExamples(*tokenizer, *pairs, {});
  ASSERT_EQ(examples.size(), 3u);
  for (size_t i = 0; i < examples.size(); ++i) {
    const Example& example = examples[i];
    std::vector<int32_t> prompt = tokenizer->Encode(pairs->rows[i].prompt, true, false);
    std::vector<int32_t> response = tokenizer->Encode(pairs->rows[i].response, false, true);
    ASSERT_EQ(example.tokens.size(), prompt.size() + response.size() - 1);
    ASSERT_EQ(example.targets.size(), example.tokens.size());
    for (size_t t = 0; t < example.tokens.size(); ++t) {
      if (t + 1 < prompt.size()) {
        EXPECT_EQ(example.targets[t], kIgnoreIndex) << t;
      } else {
        EXPECT_EQ(example.targets[t], response[t + 1 - prompt.size()]) << t;
      }
    }
    EXPECT_EQ(example.targets.back(), tokenizer->eos_id());
    EXPECT_EQ(example.group, pairs->rows[i].group);
  }
}

TEST(DatasetExamplesTest, PromptResponseTruncationKeepsBosAndTargets) {
  auto tokenizer = Tok512();
  ASSERT_NE(tokenizer, nullptr);
  PromptResponses pairs;
  std::string long_prompt;
  for (int i = 0; i < 60; ++i) long_prompt += "word" + std::to_string(i) + " ";
  pairs.rows = {{long_prompt, "short answer", "", "x:1"},
                {"short prompt", long_prompt, "", "x:2"},
                {long_prompt, long_prompt, "", "x:3"}};
  PromptResponseOptions options;
  options.max_len = 24;
  std::vector<Example> examples = MakePromptResponseExamples(*tokenizer, pairs, options);
  ASSERT_EQ(examples.size(), 3u);
  std::vector<int32_t> short_answer = tokenizer->Encode("short answer", false, true);
  for (const Example& example : examples) {
    EXPECT_EQ(example.tokens.size(), 24u);
    EXPECT_EQ(example.tokens[0], tokenizer->bos_id());
    size_t with_loss = std::count_if(example.targets.begin(), example.targets.end(),
                                     [](int32_t t) { return t != kIgnoreIndex; });
    EXPECT_GE(with_loss, 1u);
  }
  // A short response survives whole after a long prompt.
  EXPECT_EQ(std::vector<int32_t>(examples[0].targets.end() - short_answer.size(), examples[0].targets.end()),
            short_answer);
  // Both long: the prompt keeps half the window (12 of 25 tokens).
  size_t ignored = std::count(examples[2].targets.begin(), examples[2].targets.end(), kIgnoreIndex);
  EXPECT_EQ(ignored, 11u);
}

// --- Splits and batches ------------------------------------------------------------------

TEST(DatasetSplitTest, TrainEvalSplitIsDisjointAndSeeded) {
  TrainEvalSplit split = SplitTrainEval(1000, 0.1, 42);
  EXPECT_EQ(split.eval.size(), 100u);
  EXPECT_EQ(split.train.size(), 900u);
  std::vector<size_t> all = split.train;
  all.insert(all.end(), split.eval.begin(), split.eval.end());
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], i);
  EXPECT_TRUE(std::is_sorted(split.eval.begin(), split.eval.end()));
  EXPECT_EQ(SplitTrainEval(1000, 0.1, 42).eval, split.eval);
  EXPECT_NE(SplitTrainEval(1000, 0.1, 43).eval, split.eval);
  EXPECT_EQ(SplitTrainEval(5, 0.01, 1).eval.size(), 1u);
  EXPECT_EQ(SplitTrainEval(1, 0.5, 1).eval.size(), 0u);
  EXPECT_EQ(SplitTrainEval(10, 0.0, 1).train.size(), 10u);
}

TEST(DatasetBatchTest, PadsAndMasksAgainstPlainLoop) {
  std::vector<Example> examples(4);
  examples[0].tokens = {5, 6, 7};
  examples[0].targets = {6, 7, 8};
  examples[1].tokens = {9};
  examples[1].targets = {kIgnoreIndex};
  examples[2].tokens = {1, 2, 3, 4, 5, 6};
  examples[2].targets = {2, 3, 4, 5, 6, 7};
  examples[3].tokens = {11, 12};
  examples[3].label = 3;
  const std::vector<size_t> indices = {2, 0, 3, 1};
  for (int32_t seq_len : {0, 4}) {
    Batch batch = MakeBatch(examples, indices, /*pad_id=*/99, seq_len);
    const size_t t = seq_len == 0 ? 6 : 4;
    ASSERT_EQ(batch.batch_size, 4);
    ASSERT_EQ(batch.seq_len, static_cast<int32_t>(t));
    ASSERT_EQ(batch.inputs.size(), 4 * t);
    for (size_t b = 0; b < 4; ++b) {
      const Example& e = examples[indices[b]];
      EXPECT_EQ(batch.lengths[b], static_cast<int32_t>(std::min(t, e.tokens.size())));
      EXPECT_EQ(batch.labels[b], e.label);
      for (size_t i = 0; i < t; ++i) {
        int32_t input = i < e.tokens.size() ? e.tokens[i] : 99;
        int32_t target = i < e.targets.size() ? e.targets[i] : kIgnoreIndex;
        EXPECT_EQ(batch.inputs[b * t + i], input) << b << "," << i;
        EXPECT_EQ(batch.targets[b * t + i], target) << b << "," << i;
      }
    }
  }
}

TEST(DatasetBatchTest, BatchOrderCoversEveryIndexOnce) {
  auto batches = MakeBatchOrder(103, 10, 7);
  ASSERT_EQ(batches.size(), 11u);
  EXPECT_EQ(batches.back().size(), 3u);
  std::vector<size_t> seen;
  for (const auto& batch : batches) seen.insert(seen.end(), batch.begin(), batch.end());
  std::sort(seen.begin(), seen.end());
  for (size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], i);
  EXPECT_EQ(MakeBatchOrder(103, 10, 7, /*drop_last=*/true).size(), 10u);
  EXPECT_NE(MakeBatchOrder(103, 10, 8)[0], batches[0]);
}

}  // namespace
}  // namespace fedfm::model
