// PartialLayerTrainer on the bundled stories260K model.
#include "client/partial_trainer.h"

#include <gtest/gtest.h>

#include "client/train_loop_testing.h"
#include "peft/state.h"
#include "peft/trainable.h"

namespace fedfm::client {
namespace {

using testing::AllSevenLora;
using testing::ShakespeareData;
using testing::Stories;

protocols::TensorMap InitialState(bool full_weights, int full_blocks) {
  peft::StateLayout layout;
  layout.lora = AllSevenLora(4);
  layout.lora_adapters = !full_weights;
  layout.full_weight_blocks = full_blocks;
  absl::StatusOr<protocols::TensorMap> state = peft::InitTrainableState(*Stories(), layout, 5);
  EXPECT_TRUE(state.ok()) << state.status();
  return *state;
}

protocols::Task PartialTask(int k, int steps) {
  protocols::Task task;
  task.method = protocols::Method::kPartial;
  task.top_blocks = k;
  task.local_steps = steps;
  task.batch_size = 8;
  task.seq_len = 64;
  task.learning_rate = 1e-2;
  task.round_seed = 3;
  return task;
}

PeftTrainerOptions Options() {
  PeftTrainerOptions o;
  o.lora = AllSevenLora(4);
  return o;
}

TEST(PartialTrainerTest, TrainsTheAdaptersOfTheTopBlocksOnly) {
  Dataset data = ShakespeareData();
  const protocols::TensorMap state = InitialState(false, 0);
  PartialLayerTrainer trainer(Stories(), Options(), 1);
  protocols::TensorMap scratch = state;
  absl::StatusOr<protocols::Update> update = trainer.Train(PartialTask(2, 12), scratch, data);
  ASSERT_TRUE(update.ok()) << update.status();
  ASSERT_TRUE(protocols::ValidateDenseUpdate(*update, state).ok());
  EXPECT_EQ(update->delta.size(), 2u * 7u * 2u);
  for (const auto& [name, t] : update->delta) EXPECT_GE(peft::BlockOfTensor(name), 3) << name;
  EXPECT_EQ(update->metrics.at("trainable_parameters"), 23120 * 2 / 5);
  EXPECT_EQ(update->metrics.at("top_blocks"), 2);
  EXPECT_LT(update->metrics.at("train_loss_last"), update->metrics.at("train_loss_first"));
  // A LoRA task is not this trainer's.
  protocols::Task lora = PartialTask(2, 1);
  lora.method = protocols::Method::kLora;
  EXPECT_EQ(trainer.Train(lora, scratch, data).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PartialTrainerTest, TrainsFullWeightsOfTheTopBlocks) {
  Dataset data = ShakespeareData();
  const protocols::TensorMap state = InitialState(true, 2);
  PartialLayerTrainer trainer(Stories(), Options(), 2);
  protocols::Task task = PartialTask(1, 6);
  task.partial_full_weights = true;
  task.learning_rate = 1e-3;
  protocols::TensorMap scratch = state;
  absl::StatusOr<protocols::EvalReport> before = trainer.Evaluate(task, state, data);
  absl::StatusOr<protocols::Update> update = trainer.Train(task, scratch, data);
  ASSERT_TRUE(before.ok() && update.ok()) << update.status();
  ASSERT_TRUE(protocols::ValidateDenseUpdate(*update, state).ok());
  // k = 1: block 4's nine tensors; block 3's full weights stay frozen.
  EXPECT_EQ(update->delta.size(), 9u);
  for (const auto& [name, t] : update->delta) {
    EXPECT_EQ(peft::BlockOfTensor(name), 4) << name;
    EXPECT_EQ(name.find("lora_"), std::string::npos) << name;
  }
  absl::StatusOr<protocols::EvalReport> after =
      trainer.Evaluate(task, testing::ApplyDelta(state, update->delta), data);
  ASSERT_TRUE(after.ok());
  EXPECT_LT(after->metrics.at("eval_loss"), before->metrics.at("eval_loss"));
}

TEST(PartialTrainerTest, ProgressiveScheduleWhenTheTaskLeavesKOpen) {
  Dataset data = ShakespeareData();
  const protocols::TensorMap state = InitialState(false, 0);
  PeftTrainerOptions options = Options();
  options.partial.top_blocks = 1;
  options.partial.progressive_every = 2;
  options.partial.progressive_step = 1;
  PartialLayerTrainer trainer(Stories(), options, 3);
  for (int round : {0, 1, 2, 5, 20}) {
    protocols::Task task = PartialTask(/*k=*/0, 1);
    task.round = round;
    const int k = peft::TopBlocksForRound(options.partial, round, 5);
    EXPECT_EQ(trainer.TopBlocks(task), k);
    protocols::TensorMap scratch = state;
    absl::StatusOr<protocols::Update> update = trainer.Train(task, scratch, data);
    ASSERT_TRUE(update.ok()) << update.status();
    EXPECT_EQ(update->metrics.at("top_blocks"), k) << "round " << round;
    EXPECT_EQ(update->delta.size(), static_cast<size_t>(k) * 14u) << "round " << round;
  }
}

}  // namespace
}  // namespace fedfm::client
