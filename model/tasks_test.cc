#include "model/tasks.h"

#include <string>

#include "gtest/gtest.h"

namespace fedfm::model {
namespace {

constexpr char kStories[] = "assets/stories260K/stories260K.bin";
constexpr char kTok512[] = "assets/stories260K/tok512.bin";

TEST(ModelTasksTest, DescribeReadsHeaderOnly) {
  auto summary = DescribeModel(kStories);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->num_parameters, 260032);
  EXPECT_EQ(summary->checkpoint.dtype, "F32");
  auto hf = DescribeModel("tests/fixtures/hf_qwen2");
  ASSERT_TRUE(hf.ok()) << hf.status();
  EXPECT_EQ(hf->checkpoint.config.architecture, "Qwen2ForCausalLM");
  EXPECT_EQ(DescribeModel("no/such/model.bin").status().code(), absl::StatusCode::kNotFound);
}

TEST(ModelTasksTest, GreedyGenerationStreamsTheKnownStory) {
  GenerateRequest request;
  request.model = kStories;
  request.tokenizer = kTok512;
  request.max_tokens = 40;
  std::string text;
  int pieces = 0;
  ASSERT_TRUE(GenerateText(request, [&](const std::string& piece) {
                text += piece;
                ++pieces;
              }).ok());
  EXPECT_GT(pieces, 20);  // streamed token by token
  EXPECT_EQ(text.substr(text.find_first_not_of(' ')),
            "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
            "One day, she saw a big, r");
  // A prompt is echoed and continued; sampling is reproducible from its seed.
  request.prompt = "Once upon a time, Tom";
  request.temperature = 0.8;
  request.seed = 7;
  request.max_tokens = 20;
  std::string a, b;
  ASSERT_TRUE(GenerateText(request, [&](const std::string& piece) { a += piece; }).ok());
  ASSERT_TRUE(GenerateText(request, [&](const std::string& piece) { b += piece; }).ok());
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.find("Once upon a time, Tom"), a.find_first_not_of(' ')) << a;
  EXPECT_GT(a.size(), std::string("Once upon a time, Tom").size() + 20);
}

TEST(ModelTasksTest, EvaluateTextReportsLossAndCounts) {
  EvalRequest request;
  request.model = kStories;
  request.tokenizer = kTok512;
  request.text = "assets/tinystories_val/cs336_tinystories_sample.txt";
  auto result = EvaluateText(request);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->documents, 5);
  EXPECT_GT(result->tokens, 1000);
  EXPECT_GT(result->mean_loss, 1.3);
  EXPECT_LT(result->mean_loss, 1.7);
  EXPECT_NEAR(result->perplexity, std::exp(result->mean_loss), 1e-9);
  request.max_tokens = 100;
  auto limited = EvaluateText(request);
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(limited->tokens, 100);
}

TEST(ModelTasksTest, BenchReportsEveryPhase) {
  BenchRequest request;
  request.model = kStories;
  request.batch = 2;
  request.seq_len = 16;
  request.iters = 1;
  request.warmup = 0;
  auto result = BenchForward(request);
  ASSERT_TRUE(result.ok()) << result.status();
  for (const BenchPhase* phase : {&result->forward, &result->forward_loss, &result->train_step}) {
    EXPECT_GT(phase->ms_per_iter, 0);
    EXPECT_GT(phase->cpu_ms_per_iter, 0);
    EXPECT_GT(phase->tokens_per_s, 0);
  }
  EXPECT_GT(result->cores, 0);
  EXPECT_GT(result->threads, 0);
}

TEST(ModelTasksTest, RejectsBadTargetsAndMismatchedTokenizers) {
  BenchRequest bench;
  bench.model = kStories;
  bench.target.dtype = "f16";
  EXPECT_EQ(BenchForward(bench).status().code(), absl::StatusCode::kInvalidArgument);
  bench.target = RunTarget{"f32", "tpu"};
  EXPECT_EQ(BenchForward(bench).status().code(), absl::StatusCode::kInvalidArgument);
  bench.target = RunTarget{};
  bench.seq_len = 4096;
  EXPECT_EQ(BenchForward(bench).status().code(), absl::StatusCode::kInvalidArgument);
  // A tokenizer with more ids than the model has embeddings.
  GenerateRequest request;
  request.model = "tests/fixtures/hf_llama";  // 482 embeddings
  request.tokenizer = kTok512;
  auto status = GenerateText(request, [](const std::string&) {});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(status.message()).find("512 ids"), std::string::npos) << status;
}

}  // namespace
}  // namespace fedfm::model
