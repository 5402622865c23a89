#include "peft/state.h"

#include <gtest/gtest.h>

#include <cmath>

namespace fedfm::peft {
namespace {

using protocols::Method;

// stories260K's shape (assets/stories260K, data README).
model::ModelConfig Stories260K() {
  model::ModelConfig c;
  c.dim = 64;
  c.hidden_dim = 172;
  c.n_layers = 5;
  c.n_heads = 8;
  c.n_kv_heads = 4;
  c.vocab_size = 512;
  c.max_seq_len = 512;
  return c;
}

LoraSpec AllSeven(int rank) {
  LoraSpec spec;
  spec.rank = rank;
  spec.targets.assign(model::kAllProjections.begin(), model::kAllProjections.end());
  return spec;
}

TEST(LoraStateTest, NamesRoundTrip) {
  EXPECT_EQ(LoraTensorName(3, model::Projection::kQ, LoraMatrix::kA),
            "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight");
  EXPECT_EQ(LoraTensorName(0, model::Projection::kDown, LoraMatrix::kB),
            "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
  for (int layer : {0, 7, 31}) {
    for (model::Projection p : model::kAllProjections) {
      for (LoraMatrix m : {LoraMatrix::kA, LoraMatrix::kB}) {
        LoraTensorId id;
        ASSERT_TRUE(ParseLoraTensorName(LoraTensorName(layer, p, m), &id));
        EXPECT_EQ(id.layer, layer);
        EXPECT_EQ(id.projection, p);
        EXPECT_EQ(id.matrix, m);
      }
    }
  }
  LoraTensorId id;
  EXPECT_FALSE(ParseLoraTensorName("model.layers.0.self_attn.q_proj.weight", &id));
  EXPECT_FALSE(ParseLoraTensorName("base_model.model.model.layers.x.self_attn.q_proj.lora_A.weight", &id));
  EXPECT_FALSE(ParseLoraTensorName("base_model.model.model.layers.1.self_attn.q_proj.lora_C.weight", &id));
  EXPECT_FALSE(ParseLoraTensorName(kScoreHeadName, &id));
}

TEST(LoraStateTest, BlockOfTensor) {
  EXPECT_EQ(BlockOfTensor("base_model.model.model.layers.12.mlp.up_proj.lora_B.weight"), 12);
  EXPECT_EQ(BlockOfTensor("model.layers.4.input_layernorm.weight"), 4);
  EXPECT_EQ(BlockOfTensor(kScoreHeadName), -1);
  EXPECT_EQ(BlockOfTensor("model.norm.weight"), -1);
  EXPECT_EQ(BlockOfTensor("model.sublayers.3.x"), -1);
}

TEST(LoraStateTest, SpecFromOptions) {
  protocols::LoraOptions options;
  options.rank = 4;
  options.alpha = 8;
  options.targets = {"down_proj", "q_proj"};
  absl::StatusOr<LoraSpec> spec = LoraSpecFromOptions(options);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->targets, (std::vector<model::Projection>{model::Projection::kQ, model::Projection::kDown}));
  EXPECT_DOUBLE_EQ(spec->Scale(), 2.0);
  spec->rslora = true;
  EXPECT_DOUBLE_EQ(spec->Scale(), 4.0);

  options.targets = {"q_proj", "qq_proj"};
  absl::StatusOr<LoraSpec> bad = LoraSpecFromOptions(options);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("qq_proj"), std::string::npos) << bad.status();
  options.targets = {"q_proj", "q_proj"};
  EXPECT_FALSE(LoraSpecFromOptions(options).ok());
  options.targets = {"q_proj"};
  options.rank = 0;
  EXPECT_FALSE(LoraSpecFromOptions(options).ok());
}

TEST(LoraStateTest, InitMatchesPeftAndParameterCount) {
  const model::ModelConfig config = Stories260K();
  StateLayout layout;
  layout.lora = AllSeven(4);
  absl::StatusOr<protocols::TensorMap> state = InitAdapterState(config, layout, /*seed=*/7);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->size(), 5u * 7u * 2u);
  EXPECT_EQ(state->TotalElements(), 23120);  // coordinator/policy.h's figure
  EXPECT_EQ(LoraParameterCount(config, layout.lora, 4), 23120);
  for (const auto& [name, t] : *state) {
    LoraTensorId id;
    ASSERT_TRUE(ParseLoraTensorName(name, &id)) << name;
    std::span<const float> v = t.floats();
    if (id.matrix == LoraMatrix::kB) {
      for (float x : v) ASSERT_EQ(x, 0.0f) << name;
      continue;
    }
    // kaiming_uniform_(a = sqrt(5)) on [r, in]: U(-1/sqrt(in), 1/sqrt(in)).
    const double bound = 1.0 / std::sqrt(static_cast<double>(t.shape()[1]));
    double sum = 0, sum_sq = 0;
    for (float x : v) {
      ASSERT_LE(std::fabs(x), bound) << name;
      sum += x;
      sum_sq += x * x;
    }
    const double n = static_cast<double>(v.size());
    EXPECT_NEAR(sum / n, 0.0, 0.35 * bound) << name;
    // Variance of U(-b, b) is b^2 / 3.
    EXPECT_NEAR(sum_sq / n, bound * bound / 3, 0.35 * bound * bound / 3) << name;
  }
  // Same seed, same values; another seed, other values; a tensor's values do
  // not depend on the rest of the layout.
  absl::StatusOr<protocols::TensorMap> again = InitAdapterState(config, layout, 7);
  absl::StatusOr<protocols::TensorMap> other = InitAdapterState(config, layout, 8);
  StateLayout fewer = layout;
  fewer.lora.targets = {model::Projection::kV};
  absl::StatusOr<protocols::TensorMap> subset = InitAdapterState(config, fewer, 7);
  ASSERT_TRUE(again.ok() && other.ok() && subset.ok());
  const std::string a = LoraTensorName(2, model::Projection::kV, LoraMatrix::kA);
  EXPECT_TRUE(state->at(a).Identical(again->at(a)));
  EXPECT_FALSE(state->at(a).Identical(other->at(a)));
  EXPECT_TRUE(state->at(a).Identical(subset->at(a)));
}

TEST(LoraStateTest, InitHead) {
  StateLayout layout;
  layout.lora = AllSeven(2);
  layout.num_labels = 3;
  absl::StatusOr<protocols::TensorMap> state = InitAdapterState(Stories260K(), layout, 1);
  ASSERT_TRUE(state.ok()) << state.status();
  const protocols::Tensor* head = state->Find(kScoreHeadName);
  ASSERT_NE(head, nullptr);
  EXPECT_EQ(head->shape(), (protocols::Shape{3, 64}));
  double sum_sq = 0;
  for (float x : head->floats()) sum_sq += x * x;
  EXPECT_NEAR(std::sqrt(sum_sq / head->numel()), 0.02, 0.005);
}

TEST(LoraCoverageTest, HeterogeneousRankCoversLeadingSlices) {
  StateLayout layout;
  layout.lora = AllSeven(4);
  layout.num_labels = 2;
  absl::StatusOr<protocols::TensorMap> state = InitAdapterState(Stories260K(), layout, 1);
  ASSERT_TRUE(state.ok());
  TrainRequest request;
  request.method = Method::kLora;
  request.lora_rank = 2;
  absl::StatusOr<protocols::Coverage> c = TrainedCoverage(*state, request, 5);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->tensors.size(), state->size());
  for (const protocols::TensorCoverage& t : c->tensors) {
    LoraTensorId id;
    if (!ParseLoraTensorName(t.name, &id)) {
      EXPECT_EQ(t.name, kScoreHeadName);
      EXPECT_EQ(t.rank_dim, -1);
      continue;
    }
    EXPECT_EQ(t.rank_dim, id.matrix == LoraMatrix::kA ? 0 : 1) << t.name;
    EXPECT_EQ(t.rank, 2);
  }
  request.lora_rank = 4;  // the whole rank: whole tensors
  c = TrainedCoverage(*state, request, 5);
  ASSERT_TRUE(c.ok());
  for (const protocols::TensorCoverage& t : c->tensors) EXPECT_EQ(t.rank_dim, -1) << t.name;
  request.freeze_a = true;  // FFA-LoRA: B and the head only
  c = TrainedCoverage(*state, request, 5);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->tensors.size(), 5u * 7u + 1u);
  for (const protocols::TensorCoverage& t : c->tensors) EXPECT_EQ(t.name.find("lora_A"), std::string::npos);
  EXPECT_EQ(FirstTrainedBlock(*c, 5), 0);
}

TEST(PartialCoverageTest, TopBlocksOnly) {
  StateLayout layout;
  layout.lora = AllSeven(4);
  absl::StatusOr<protocols::TensorMap> state = InitAdapterState(Stories260K(), layout, 1);
  ASSERT_TRUE(state.ok());
  // Full weights of the top two blocks, as the trainer would add them.
  for (int layer : {3, 4}) {
    for (const std::string& name : BlockWeightNames(Stories260K(), layer)) {
      state->Set(name, protocols::Tensor::Zeros(protocols::DType::kF32, {2}));
    }
  }
  TrainRequest request;
  request.method = Method::kPartial;
  request.top_blocks = 2;
  absl::StatusOr<protocols::Coverage> c = TrainedCoverage(*state, request, 5);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->tensors.size(), 2u * 7u * 2u);
  for (const protocols::TensorCoverage& t : c->tensors) {
    EXPECT_GE(BlockOfTensor(t.name), 3) << t.name;
    EXPECT_NE(t.name.find("lora_"), std::string::npos) << t.name;
  }
  EXPECT_EQ(FirstTrainedBlock(*c, 5), 3);
  request.full_weights = true;
  c = TrainedCoverage(*state, request, 5);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->tensors.size(), 2u * 9u);  // two norms and seven projections per block
  for (const protocols::TensorCoverage& t : c->tensors) EXPECT_EQ(t.name.find("lora_"), std::string::npos);
  request.top_blocks = 0;
  EXPECT_FALSE(TrainedCoverage(*state, request, 5).ok());
  request.top_blocks = 6;
  EXPECT_FALSE(TrainedCoverage(*state, request, 5).ok());
}

TEST(PartialScheduleTest, ProgressiveGrowth) {
  protocols::PartialOptions p;
  p.top_blocks = 1;
  EXPECT_EQ(TopBlocksForRound(p, 0, 5), 1);
  EXPECT_EQ(TopBlocksForRound(p, 100, 5), 1);  // fixed k
  p.progressive_every = 3;
  p.progressive_step = 2;
  const int expected[] = {1, 1, 1, 3, 3, 3, 5, 5, 5, 5};
  for (int round = 0; round < 10; ++round) EXPECT_EQ(TopBlocksForRound(p, round, 5), expected[round]) << round;
  p.progressive_max = 4;
  EXPECT_EQ(TopBlocksForRound(p, 6, 5), 4);
  p.progressive_max = 50;  // never above the model's blocks
  EXPECT_EQ(TopBlocksForRound(p, 1000, 5), 5);
  p.top_blocks = 9;
  p.progressive_every = 0;
  EXPECT_EQ(TopBlocksForRound(p, 0, 5), 5);
}

}  // namespace
}  // namespace fedfm::peft
