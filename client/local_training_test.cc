// `fedfm train`'s engine end to end: data file -> adapter directory and metrics.json.
#include "client/local_training.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "peft/adapter_io.h"
#include "protocols/file_util.h"

namespace fedfm::client {
namespace {

std::filesystem::path TempDir(const std::string& name) {
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("fedfm_local_training_test_" + std::to_string(getpid()) + "_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

protocols::RunConfig SmallRun(const std::filesystem::path& dir) {
  const std::string text = *protocols::ReadFileToString("assets/tinyshakespeare/input.txt");
  EXPECT_TRUE(protocols::WriteFileAtomic(dir / "data.txt", text.substr(0, 40000)).ok());
  protocols::RunConfig config;
  config.data.path = (dir / "data.txt").string();
  config.data.format = "text";
  config.data.seq_len = 64;
  config.data.eval_fraction = 0.1;
  config.train.local_steps = 12;
  config.train.batch_size = 8;
  config.train.learning_rate = 1e-2;
  config.lora.rank = 4;
  config.lora.alpha = 8;
  config.lora.targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  config.run.seed = 5;
  return config;
}

TEST(TrainLocalTest, LoraWritesAPeftAdapterAndMetrics) {
  const std::filesystem::path dir = TempDir("lora");
  LocalTrainRequest request;
  request.config = SmallRun(dir);
  request.out = dir / "out";
  int steps_seen = 0;
  request.on_step = [&](const TrainProgress& p) {
    ++steps_seen;
    EXPECT_EQ(p.steps, 12);
    EXPECT_EQ(p.step, steps_seen);
  };
  absl::StatusOr<LocalTrainResult> result = RunLocalTraining(request);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(steps_seen, 12);
  EXPECT_LT(result->eval_loss_after, result->eval_loss_before);
  EXPECT_EQ(result->losses.size(), 12u);
  absl::StatusOr<peft::Adapter> adapter = peft::LoadAdapter(request.out);
  ASSERT_TRUE(adapter.ok()) << adapter.status();
  EXPECT_EQ(adapter->config.r, 4);
  EXPECT_EQ(adapter->config.lora_alpha, 8);
  EXPECT_EQ(adapter->tensors.size(), 5u * 7u * 2u);
  nlohmann::json metrics = nlohmann::json::parse(*protocols::ReadFileToString(request.out / "metrics.json"));
  EXPECT_EQ(metrics["loss_curve"].size(), 12u);
  EXPECT_EQ(metrics["method"], "lora");
  EXPECT_LT(metrics["eval_loss_after"].get<double>(), metrics["eval_loss_before"].get<double>());
  EXPECT_GT(metrics["peak_memory_bytes"].get<double>(), 0);
  EXPECT_GT(metrics["tokens_per_s"].get<double>(), 0);
  std::filesystem::remove_all(dir);
}

TEST(TrainLocalTest, PartialFullWeightsWritesTheBlocks) {
  const std::filesystem::path dir = TempDir("partial");
  LocalTrainRequest request;
  request.config = SmallRun(dir);
  request.config.train.local_steps = 3;
  request.config.train.learning_rate = 1e-3;
  request.config.partial.top_blocks = 1;
  request.config.partial.full_weights = true;
  request.method = protocols::Method::kPartial;
  request.out = dir / "out";
  absl::StatusOr<LocalTrainResult> result = RunLocalTraining(request);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->top_blocks, 1);
  absl::StatusOr<peft::Adapter> adapter = peft::LoadAdapter(request.out);
  ASSERT_TRUE(adapter.ok()) << adapter.status();
  EXPECT_TRUE(adapter->tensors.empty());
  EXPECT_EQ(adapter->full_weights.size(), 9u);
  std::filesystem::remove_all(dir);
}

TEST(TrainLocalTest, BenchReportsStepTimes) {
  BenchTrainRequest request;
  request.batch = 4;
  request.seq_len = 32;
  request.steps = 3;
  request.warmup = 1;
  absl::StatusOr<BenchTrainResult> result = BenchTrain(request);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->trainable_parameters, 23120);
  EXPECT_GT(result->ms_per_step, 0);
  EXPECT_LE(result->ms_per_step_min, result->ms_per_step_median);
  EXPECT_GT(result->tokens_per_s, 0);
  request.method = protocols::Method::kZerothOrder;
  EXPECT_EQ(BenchTrain(request).status().code(), absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace fedfm::client
