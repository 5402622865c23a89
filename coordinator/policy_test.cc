#include "coordinator/policy.h"

#include "gtest/gtest.h"

namespace fedfm::coordinator {
namespace {

using protocols::DeviceProfile;
using protocols::Method;
using protocols::RunConfig;

constexpr uint64_t kMiB = 1 << 20;

// A Llama-3.2-1B-like shape: where the methods' memory needs differ by GiBs.
protocols::ModelDims OneB() {
  return {.num_params = 1'235'814'400, .num_layers = 16, .dim = 2048, .hidden_dim = 8192, .num_heads = 32,
          .num_kv_heads = 8, .vocab_size = 128256, .bytes_per_param = 2};
}

RunConfig Config() {
  RunConfig c;
  c.train.batch_size = 8;
  c.data.seq_len = 512;
  c.lora.rank = 16;
  c.lora.client_ranks = {4, 8, 16};
  c.partial.top_blocks = 4;
  c.rounds.deadline_s = 1e9;
  return c;
}

DeviceProfile Device(uint64_t memory_bytes) {
  return {.name = "dev", .memory_bytes = memory_bytes, .flops_per_s = 1e12, .uplink_bytes_per_s = 1e8,
          .downlink_bytes_per_s = 1e8};
}

TEST(PolicyTest, MemoryOrdersTheMethods) {
  RunConfig config = Config();
  WorkloadShape shape = MakeWorkloadShape(config, OneB());
  uint64_t lora = EstimateMemoryBytes(shape, {.method = Method::kLora, .lora_rank = 16});
  uint64_t partial = EstimateMemoryBytes(shape, {.method = Method::kPartial, .lora_rank = 16, .top_blocks = 2});
  uint64_t zo = EstimateMemoryBytes(shape, {.method = Method::kZerothOrder});
  EXPECT_GT(lora, partial);
  EXPECT_GT(partial, zo);
  EXPECT_GT(zo, static_cast<uint64_t>(OneB().num_params) * 2);  // at least the weights
}

TEST(PolicyTest, AutoPicksLoraThenPartialThenZerothOrderAsMemoryShrinks) {
  RunConfig config = Config();
  WorkloadShape shape = MakeWorkloadShape(config, OneB());
  uint64_t lora = EstimateMemoryBytes(shape, {.method = Method::kLora, .lora_rank = 16});
  uint64_t lora4 = EstimateMemoryBytes(shape, {.method = Method::kLora, .lora_rank = 4});
  uint64_t partial1 = EstimateMemoryBytes(shape, {.method = Method::kPartial, .lora_rank = 16, .top_blocks = 1});
  uint64_t zo = EstimateMemoryBytes(shape, {.method = Method::kZerothOrder});

  auto big = ChooseMethod(Device(lora + kMiB), config, shape);
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ(big->method, Method::kLora);
  EXPECT_EQ(big->lora_rank, 16);

  auto lower_rank = ChooseMethod(Device(lora - 1), config, shape);
  ASSERT_TRUE(lower_rank.ok()) << lower_rank.status();
  EXPECT_EQ(lower_rank->method, Method::kLora);
  EXPECT_LT(lower_rank->lora_rank, 16);

  auto mid = ChooseMethod(Device(lora4 - 1), config, shape);
  ASSERT_TRUE(mid.ok()) << mid.status();
  EXPECT_EQ(mid->method, Method::kPartial);
  EXPECT_GE(mid->top_blocks, 1);
  EXPECT_LE(mid->memory_bytes, lora4 - 1);

  auto small = ChooseMethod(Device(partial1 - kMiB), config, shape);
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->method, Method::kZerothOrder);

  auto none = ChooseMethod(Device(zo / 2), config, shape);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(none.status().message().find("\"dev\""), std::string_view::npos) << none.status();
}

TEST(PolicyTest, CarriedOptimizerStateTriplesTheBackpropTransfers) {
  RunConfig config = Config();
  const WorkloadShape fresh = MakeWorkloadShape(config, OneB());
  config.train.optimizer_state = "global";
  const WorkloadShape carried = MakeWorkloadShape(config, OneB());
  for (const MethodChoice& c : {MethodChoice{.method = Method::kLora, .lora_rank = 8},
                                MethodChoice{.method = Method::kPartial, .lora_rank = 8, .top_blocks = 2}}) {
    EXPECT_EQ(EstimateUploadBytes(carried, c), 3 * EstimateUploadBytes(fresh, c) + 4);
  }
  const MethodChoice zo{.method = Method::kZerothOrder};
  EXPECT_EQ(EstimateUploadBytes(carried, zo), EstimateUploadBytes(fresh, zo));  // seed scalars only
  EXPECT_EQ(EstimateDownloadBytes(carried, config), 3 * EstimateDownloadBytes(fresh, config) + 4);
}

TEST(PolicyTest, SlowUplinkGetsASmallerRankWithinTheDeadline) {
  RunConfig config = Config();
  WorkloadShape shape = MakeWorkloadShape(config, OneB());
  DeviceProfile fast = Device(uint64_t{1} << 40);
  MethodChoice r16{.method = Method::kLora, .lora_rank = 16};
  MethodChoice r4{.method = Method::kLora, .lora_rank = 4};
  uint64_t download = EstimateDownloadBytes(shape, config);
  DeviceProfile slow = fast;
  slow.uplink_bytes_per_s = 1e5;
  // A deadline between the rank-4 and rank-16 round times of the slow device.
  config.rounds.deadline_s =
      (EstimateRoundSeconds(shape, slow, r16, download) + EstimateRoundSeconds(shape, slow, r4, download)) / 2;
  auto fast_choice = ChooseMethod(fast, config, shape);
  auto slow_choice = ChooseMethod(slow, config, shape);
  ASSERT_TRUE(fast_choice.ok() && slow_choice.ok());
  EXPECT_EQ(fast_choice->lora_rank, 16);
  EXPECT_EQ(slow_choice->method, Method::kLora);
  EXPECT_LT(slow_choice->lora_rank, 16);
  EXPECT_LE(slow_choice->round_seconds, config.rounds.deadline_s);
}

TEST(PolicyTest, HonoursConfiguredAndSupportedMethods) {
  RunConfig config = Config();
  WorkloadShape shape = MakeWorkloadShape(config, OneB());
  DeviceProfile big = Device(uint64_t{1} << 40);
  config.train.method = Method::kZerothOrder;
  EXPECT_EQ(ChooseMethod(big, config, shape)->method, Method::kZerothOrder);
  config.train.method = Method::kAuto;
  big.methods = {Method::kPartial};
  auto partial = ChooseMethod(big, config, shape);
  ASSERT_TRUE(partial.ok());
  EXPECT_EQ(partial->method, Method::kPartial);
  EXPECT_EQ(partial->top_blocks, 4);
}

TEST(PolicyTest, CountsLoraParametersOfStories260K) {
  // stories260K: dim 64, hidden 172, 5 layers, 8 heads, 4 kv heads; rank 4 on
  // all seven projections = 23,120 parameters (matches the PEFT count).
  RunConfig config;
  config.lora.targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  WorkloadShape shape = MakeWorkloadShape(
      config, {.num_params = 260032, .num_layers = 5, .dim = 64, .hidden_dim = 172, .num_heads = 8, .num_kv_heads = 4,
               .vocab_size = 512});
  EXPECT_EQ(LoraParameterCount(shape, 4), 23120);
}

}  // namespace
}  // namespace fedfm::coordinator
