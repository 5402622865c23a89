// LoraTrainer on the bundled stories260K model and tiny Shakespeare.
#include "client/lora_trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <thread>

#include "client/train_loop_testing.h"
#include "model/loader.h"
#include "model/torch_bridge.h"
#include "peft/state.h"
#include "peft/trainable.h"
#include "protocols/optimizer_state.h"

namespace fedfm::client {
namespace {

using testing::AllSevenLora;
using testing::DeltaNorm;
using testing::ShakespeareData;
using testing::Stories;

protocols::TensorMap InitialState(int rank, uint64_t seed, int num_labels = 0) {
  peft::StateLayout layout;
  layout.lora = AllSevenLora(rank);
  layout.num_labels = num_labels;
  absl::StatusOr<protocols::TensorMap> state = peft::InitTrainableState(*Stories(), layout, seed);
  EXPECT_TRUE(state.ok()) << state.status();
  return *state;
}

protocols::Task LoraTask(int steps, double lr) {
  protocols::Task task;
  task.method = protocols::Method::kLora;
  task.local_steps = steps;
  task.batch_size = 8;
  task.seq_len = 64;
  task.learning_rate = lr;
  task.round_seed = 42;
  return task;
}

PeftTrainerOptions Options(int rank) {
  PeftTrainerOptions o;
  o.lora = AllSevenLora(rank);
  o.train.grad_clip = 1.0;
  return o;
}

TEST(LoraTrainerTest, ShortShakespeareRunLowersEvalLoss) {
  Dataset data = ShakespeareData();
  protocols::TensorMap state = InitialState(4, 1);
  LoraTrainer trainer(Stories(), Options(4), /*seed=*/3);
  const protocols::Task task = LoraTask(/*steps=*/25, /*lr=*/1e-2);
  absl::StatusOr<protocols::EvalReport> before = trainer.Evaluate(task, state, data);
  ASSERT_TRUE(before.ok()) << before.status();
  protocols::TensorMap scratch = state;
  absl::StatusOr<protocols::Update> update = trainer.Train(task, scratch, data);
  ASSERT_TRUE(update.ok()) << update.status();
  EXPECT_TRUE(protocols::ValidateDenseUpdate(*update, state).ok());
  EXPECT_EQ(update->num_examples, 25u * 8u);
  EXPECT_EQ(update->metrics.at("trainable_parameters"), 23120);
  EXPECT_LT(update->metrics.at("train_loss_last"), update->metrics.at("train_loss_first"));
  EXPECT_GT(update->metrics.at("tokens_per_s"), 0);
  absl::StatusOr<protocols::EvalReport> after =
      trainer.Evaluate(task, testing::ApplyDelta(state, update->delta), data);
  ASSERT_TRUE(after.ok()) << after.status();
  const double loss0 = before->metrics.at("eval_loss"), loss1 = after->metrics.at("eval_loss");
  // stories260K starts near 4.1 nats on Shakespeare (data README).
  EXPECT_GT(loss0, 3.5);
  EXPECT_LT(loss1, loss0 - 0.4) << "eval loss " << loss0 << " -> " << loss1;
}

TEST(LoraTrainerTest, HeterogeneousRankUpdateCoversLeadingSlices) {
  Dataset data = ShakespeareData();
  const protocols::TensorMap state = InitialState(4, 2);
  LoraTrainer trainer(Stories(), Options(4), 5);
  protocols::Task task = LoraTask(3, 1e-2);
  task.lora_rank = 2;
  protocols::TensorMap scratch = state;
  absl::StatusOr<protocols::Update> update = trainer.Train(task, scratch, data);
  ASSERT_TRUE(update.ok()) << update.status();
  ASSERT_TRUE(protocols::ValidateDenseUpdate(*update, state).ok());
  EXPECT_EQ(update->metrics.at("trainable_parameters"), 23120 / 2);
  ASSERT_EQ(update->coverage.tensors.size(), state.size());
  for (const protocols::TensorCoverage& c : update->coverage.tensors) {
    EXPECT_EQ(c.rank, 2) << c.name;
    EXPECT_EQ(c.rank_dim, c.name.find("lora_A") != std::string::npos ? 0 : 1) << c.name;
  }
  // A task coverage narrower than the training is refused, naming a tensor.
  task.coverage.tensors = {update->coverage.tensors.front()};
  absl::StatusOr<protocols::Update> refused = trainer.Train(task, scratch, data);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("lora_"), std::string::npos) << refused.status();
  // A coverage at least as wide is accepted.
  task.coverage = protocols::Coverage::Full(state);
  EXPECT_TRUE(trainer.Train(task, scratch, data).ok());
}

TEST(TrainerTest, FedProxPullsTowardTheRoundStart) {
  Dataset data = ShakespeareData();
  const protocols::TensorMap state = InitialState(4, 3);
  for (const char* optimizer : {"sgd", "adamw"}) {
    PeftTrainerOptions options = Options(4);
    options.train.optimizer = optimizer;
    options.train.grad_clip = 0;
    LoraTrainer trainer(Stories(), options, 7);
    protocols::Task task = LoraTask(8, std::string(optimizer) == "sgd" ? 0.2 : 1e-2);
    protocols::TensorMap scratch = state;
    absl::StatusOr<protocols::Update> plain = trainer.Train(task, scratch, data);
    task.fedprox_mu = 4.0;
    absl::StatusOr<protocols::Update> prox = trainer.Train(task, scratch, data);
    ASSERT_TRUE(plain.ok() && prox.ok());
    const double d0 = DeltaNorm(plain->delta), d1 = DeltaNorm(prox->delta);
    EXPECT_GT(d0, 0) << optimizer;
    EXPECT_LT(d1, 0.7 * d0) << optimizer << ": |delta| " << d0 << " without FedProx, " << d1 << " with";
  }
}

TEST(TrainerTest, GradientAccumulationMatchesOneLargeBatch) {
  Dataset data = ShakespeareData();
  const protocols::TensorMap state = InitialState(4, 4);
  PeftTrainerOptions options = Options(4);
  options.train.optimizer = "sgd";
  options.train.grad_clip = 0;
  LoraTrainer trainer(Stories(), options, 9);
  protocols::Task big = LoraTask(2, 0.5);
  big.batch_size = 8;
  protocols::Task split = big;
  split.batch_size = 4;
  split.grad_accumulation = 2;
  protocols::TensorMap scratch = state;
  absl::StatusOr<protocols::Update> a = trainer.Train(big, scratch, data);
  absl::StatusOr<protocols::Update> b = trainer.Train(split, scratch, data);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->num_examples, b->num_examples);
  for (const auto& [name, t] : a->delta) {
    EXPECT_TRUE(torch::allclose(model::ToTorch(t), model::ToTorch(b->delta.at(name)), 1e-4, 1e-7)) << name;
  }
}

TEST(TrainerTest, GradientClippingBoundsTheStep) {
  Dataset data = ShakespeareData();
  const protocols::TensorMap state = InitialState(4, 5);
  PeftTrainerOptions options = Options(4);
  options.train.optimizer = "sgd";
  options.train.grad_clip = 1e-3;
  LoraTrainer trainer(Stories(), options, 11);
  protocols::TensorMap scratch = state;
  absl::StatusOr<protocols::Update> update = trainer.Train(LoraTask(3, 0.5), scratch, data);
  ASSERT_TRUE(update.ok());
  EXPECT_GT(update->metrics.at("grad_norm_last"), 1e-3);  // so clipping acted
  EXPECT_LE(DeltaNorm(update->delta), 3 * 0.5 * 1e-3 * 1.0001);
}

TEST(TrainerTest, ConcurrentTrainersOnOneSharedModelMatchSequentialRuns) {
  Dataset data = ShakespeareData();
  const protocols::TensorMap state = InitialState(4, 6);
  const std::shared_ptr<const model::Model> model = Stories();
  PeftTrainerOptions options = Options(4);
  options.lora.dropout = 0.1;  // each trainer draws its own masks
  auto run = [&](uint64_t seed) {
    LoraTrainer trainer(model, options, seed);
    protocols::TensorMap scratch = state;
    Dataset own = data;
    return trainer.Train(LoraTask(4, 1e-2), scratch, own);
  };
  absl::StatusOr<protocols::Update> seq1 = run(1), seq2 = run(2);
  absl::StatusOr<protocols::Update> par1, par2;
  std::thread t1([&] { par1 = run(1); });
  std::thread t2([&] { par2 = run(2); });
  t1.join();
  t2.join();
  ASSERT_TRUE(seq1.ok() && seq2.ok() && par1.ok() && par2.ok());
  EXPECT_GT(DeltaNorm(testing::Subtract(seq1->delta, seq2->delta)), 0);  // the seeds matter
  for (const auto& [name, t] : seq1->delta) {
    EXPECT_TRUE(torch::allclose(model::ToTorch(t), model::ToTorch(par1->delta.at(name)), 1e-5, 1e-7)) << name;
    EXPECT_TRUE(torch::allclose(model::ToTorch(seq2->delta.at(name)), model::ToTorch(par2->delta.at(name)), 1e-5,
                                1e-7))
        << name;
  }
}

TEST(TrainerTest, ClassificationHeadTrainsAndReportsAccuracy) {
  // Label 0: tokens from [8, 258), label 1: from [258, 508); mean pooling sees it.
  Dataset data = testing::TokenClassificationData(/*n=*/96, /*len=*/12);
  const protocols::TensorMap state = InitialState(4, 7, /*num_labels=*/2);
  PeftTrainerOptions options = Options(4);
  options.mean_pooling = true;
  LoraTrainer trainer(Stories(), options, 13);
  protocols::Task task = LoraTask(20, 1e-2);
  task.seq_len = 0;
  absl::StatusOr<protocols::EvalReport> before = trainer.Evaluate(task, state, data);
  ASSERT_TRUE(before.ok()) << before.status();
  protocols::TensorMap scratch = state;
  absl::StatusOr<protocols::Update> update = trainer.Train(task, scratch, data);
  ASSERT_TRUE(update.ok()) << update.status();
  EXPECT_NE(update->delta.Find(peft::kScoreHeadName), nullptr);
  absl::StatusOr<protocols::EvalReport> after =
      trainer.Evaluate(task, testing::ApplyDelta(state, update->delta), data);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_LT(after->metrics.at("eval_loss"), before->metrics.at("eval_loss"));
  EXPECT_GT(after->metrics.at("eval_accuracy"), 0.9);
  // Classification data needs a head of as many classes.
  Dataset three = data;
  three.num_labels = 3;
  EXPECT_EQ(trainer.Train(task, scratch, three).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TrainerTest, ErrorsBecomeStatuses) {
  Dataset data = ShakespeareData();
  protocols::TensorMap state = InitialState(4, 8);
  LoraTrainer trainer(Stories(), Options(4), 1);
  protocols::Task task = LoraTask(1, 1e-2);
  task.method = protocols::Method::kPartial;
  EXPECT_EQ(trainer.Train(task, state, data).status().code(), absl::StatusCode::kInvalidArgument);
  task.method = protocols::Method::kLora;
  Dataset empty;
  EXPECT_EQ(trainer.Train(task, state, empty).status().code(), absl::StatusCode::kInvalidArgument);
  // A token id outside the vocabulary: LibTorch throws, the trainer returns Internal.
  Dataset bad = data;
  for (model::Example& e : bad.train) e.tokens[0] = 100000;
  absl::StatusOr<protocols::Update> failed = trainer.Train(task, state, bad);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kInternal) << failed.status();
  protocols::TensorMap wrong = state;
  wrong.Set("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
            protocols::Tensor::Zeros(protocols::DType::kF32, {4, 65}));
  EXPECT_EQ(trainer.Train(task, wrong, data).status().code(), absl::StatusCode::kInvalidArgument);
}

// train.optimizer_state = "global": two rounds of L steps from carried
// moments are one AdamW run of 2L steps (one example, batch 1: every step
// sees the same batch whatever the round seed), which two rounds from fresh
// moments are not.
TEST(TrainerTest, CarriedMomentsContinueOneAdamWRunAcrossRounds) {
  Dataset one;
  one.train = {ShakespeareData().train[0]};
  one.eval = one.train;
  peft::StateLayout layout;
  layout.lora = AllSevenLora(4);
  layout.optimizer_state = true;
  absl::StatusOr<protocols::TensorMap> carried = peft::InitTrainableState(*Stories(), layout, 4);
  ASSERT_TRUE(carried.ok()) << carried.status();
  const protocols::TensorMap fresh = protocols::WithoutOptimizerState(*carried);
  PeftTrainerOptions options = Options(4);
  options.train.grad_clip = 0;
  LoraTrainer trainer(Stories(), options, 9);
  constexpr int kL = 4;
  protocols::Task task = LoraTask(kL, 5e-3);
  task.batch_size = 1;
  // Two rounds: train from `state`, add the update, train again.
  auto two_rounds = [&](const protocols::TensorMap& state) {
    protocols::TensorMap s = state;
    for (int round = 0; round < 2; ++round) {
      protocols::TensorMap scratch = s;
      task.round_seed = 100 + round;
      absl::StatusOr<protocols::Update> u = trainer.Train(task, scratch, one);
      EXPECT_TRUE(u.ok()) << u.status();
      if (!u.ok()) return s;
      EXPECT_TRUE(protocols::ValidateDenseUpdate(*u, s).ok());
      s = testing::ApplyDelta(s, u->delta);
    }
    return s;
  };
  const protocols::TensorMap rounds = two_rounds(*carried);
  const protocols::TensorMap restarted = two_rounds(fresh);
  task.local_steps = 2 * kL;
  protocols::TensorMap scratch = *carried;
  absl::StatusOr<protocols::Update> once = trainer.Train(task, scratch, one);
  ASSERT_TRUE(once.ok()) << once.status();
  const protocols::TensorMap straight = testing::ApplyDelta(*carried, once->delta);

  EXPECT_EQ(protocols::OptimizerStep(rounds).value_or(-1), 2 * kL);
  EXPECT_EQ(protocols::OptimizerStep(straight).value_or(-1), 2 * kL);
  double step = 0, carried_err = 0, fresh_err = 0;
  for (const auto& [name, t] : fresh) {
    for (size_t i = 0; i < t.floats().size(); ++i) {
      const double want = straight.at(name).floats()[i];
      step = std::max(step, std::fabs(want - t.floats()[i]));
      carried_err = std::max(carried_err, std::fabs(rounds.at(name).floats()[i] - want));
      fresh_err = std::max(fresh_err, std::fabs(restarted.at(name).floats()[i] - want));
    }
  }
  for (const char* prefix : {protocols::kExpAvgPrefix, protocols::kExpAvgSqPrefix}) {
    const std::string name = std::string(prefix) + fresh.names()[1];  // a lora_B: moved from 0
    double norm = 0;
    for (size_t i = 0; i < straight.at(name).floats().size(); ++i) {
      norm = std::max(norm, static_cast<double>(std::fabs(straight.at(name).floats()[i])));
      carried_err = std::max(carried_err, static_cast<double>(std::fabs(rounds.at(name).floats()[i] -
                                                                        straight.at(name).floats()[i])));
    }
    EXPECT_GT(norm, 0) << name;
  }
  std::cout << "largest change " << step << ", two carried rounds vs one run " << carried_err
            << ", two fresh rounds vs one run " << fresh_err << "\n";
  EXPECT_GT(step, 1e-3);
  EXPECT_LT(carried_err, 1e-5) << "largest change " << step;
  EXPECT_GT(fresh_err, 100 * carried_err) << "restarting AdamW each round must differ";
}

TEST(TrainerTest, CarriedMomentsFollowTheClientsRankSlicesAndSgdLeavesThem) {
  Dataset data = ShakespeareData();
  peft::StateLayout layout;
  layout.lora = AllSevenLora(4);
  layout.optimizer_state = true;
  absl::StatusOr<protocols::TensorMap> state = peft::InitTrainableState(*Stories(), layout, 5);
  ASSERT_TRUE(state.ok()) << state.status();
  LoraTrainer trainer(Stories(), Options(4), 5);
  protocols::Task task = LoraTask(2, 1e-2);
  task.lora_rank = 2;
  protocols::TensorMap scratch = *state;
  absl::StatusOr<protocols::Update> update = trainer.Train(task, scratch, data);
  ASSERT_TRUE(update.ok()) << update.status();
  ASSERT_TRUE(protocols::ValidateDenseUpdate(*update, *state).ok());
  const std::string b = peft::LoraTensorName(0, model::Projection::kQ, peft::LoraMatrix::kB);
  const protocols::TensorCoverage* m = update->coverage.Find(std::string(protocols::kExpAvgSqPrefix) + b);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(*m, (protocols::TensorCoverage{m->name, 1, 2}));
  ASSERT_NE(update->coverage.Find(protocols::kOptimizerStepName), nullptr);
  EXPECT_EQ(update->delta.at(protocols::kOptimizerStepName).floats()[0], 2.0f);
  // Columns 2..3 of B's second moment belong to other ranks: untouched.
  const protocols::Tensor& v = update->delta.at(m->name);
  double inside = 0, outside = 0;
  for (int64_t row = 0; row < v.shape()[0]; ++row) {
    for (int64_t col = 0; col < 4; ++col) (col < 2 ? inside : outside) += std::fabs(v.floats()[row * 4 + col]);
  }
  EXPECT_GT(inside, 0);
  EXPECT_EQ(outside, 0);

  PeftTrainerOptions sgd = Options(4);
  sgd.train.optimizer = "sgd";
  LoraTrainer sgd_trainer(Stories(), sgd, 5);
  scratch = *state;
  absl::StatusOr<protocols::Update> plain = sgd_trainer.Train(LoraTask(2, 0.1), scratch, data);
  ASSERT_TRUE(plain.ok()) << plain.status();
  for (const protocols::TensorCoverage& c : plain->coverage.tensors) {
    EXPECT_FALSE(protocols::IsOptimizerState(c.name)) << c.name;
  }
  EXPECT_EQ(plain->coverage.tensors.size(), protocols::WithoutOptimizerState(*state).size());
}

}  // namespace
}  // namespace fedfm::client
