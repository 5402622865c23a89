#include "protocols/optimizer_state.h"

#include <limits>

#include "gtest/gtest.h"

namespace fedfm::protocols {
namespace {

TensorMap TwoTensors() {
  TensorMap s;
  EXPECT_TRUE(s.Insert("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                       Tensor::FromFloats({2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6}))
                  .ok());
  EXPECT_TRUE(s.Insert("base_model.model.score.weight", Tensor::Zeros(DType::kBF16, {1, 3})).ok());
  return s;
}

TEST(OptimizerStateTest, ZeroStateFollowsTheModelTensorsWithTorchNames) {
  const TensorMap state = TwoTensors();
  absl::StatusOr<TensorMap> with = WithZeroOptimizerState(state);
  ASSERT_TRUE(with.ok()) << with.status();
  EXPECT_EQ(with->names(),
            (std::vector<std::string>{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                                      "base_model.model.score.weight",
                                      "optimizer.exp_avg.base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                                      "optimizer.exp_avg.base_model.model.score.weight",
                                      "optimizer.exp_avg_sq.base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                                      "optimizer.exp_avg_sq.base_model.model.score.weight", "optimizer.step"}));
  const Tensor& m = with->at("optimizer.exp_avg_sq.base_model.model.score.weight");
  EXPECT_EQ(m.dtype(), DType::kF32);  // moments are float32 whatever the tensor's dtype
  EXPECT_EQ(m.shape(), (Shape{1, 3}));
  for (float x : with->at("optimizer.exp_avg.base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").floats()) {
    EXPECT_EQ(x, 0.0f);
  }
  EXPECT_TRUE(HasOptimizerState(*with));
  EXPECT_FALSE(HasOptimizerState(state));
  absl::StatusOr<double> step = OptimizerStep(*with);
  ASSERT_TRUE(step.ok());
  EXPECT_EQ(*step, 0.0);

  const TensorMap model = WithoutOptimizerState(*with);
  EXPECT_EQ(model.names(), state.names());
  EXPECT_TRUE(model.at(state.names()[0]).Identical(state.at(state.names()[0])));

  EXPECT_FALSE(WithZeroOptimizerState(*with).ok());  // twice
  TensorMap ints;
  ASSERT_TRUE(ints.Insert("labels", Tensor::Zeros(DType::kI32, {2})).ok());
  absl::StatusOr<TensorMap> bad = WithZeroOptimizerState(ints);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("labels"), std::string::npos) << bad.status();
}

TEST(OptimizerStateTest, OnlyTheOptimizerPrefixIsOptimizerState) {
  EXPECT_TRUE(IsOptimizerState("optimizer.step"));
  EXPECT_TRUE(IsOptimizerState("optimizer.exp_avg.x"));
  EXPECT_FALSE(IsOptimizerState("base_model.model.optimizer.x"));
  EXPECT_FALSE(IsOptimizerState("optimizer"));
}

TEST(OptimizerStateTest, StepMustBeOneFiniteNonNegativeFloat) {
  TensorMap s;
  EXPECT_FALSE(OptimizerStep(s).ok());
  s.Set(kOptimizerStepName, Tensor::FromFloats({2}, std::vector<float>{1, 2}));
  EXPECT_FALSE(OptimizerStep(s).ok());
  s.Set(kOptimizerStepName, Tensor::FromFloats({1}, std::vector<float>{-1}));
  EXPECT_FALSE(OptimizerStep(s).ok());
  s.Set(kOptimizerStepName, Tensor::FromFloats({1}, std::vector<float>{std::numeric_limits<float>::quiet_NaN()}));
  absl::StatusOr<double> nan = OptimizerStep(s);
  ASSERT_FALSE(nan.ok());
  EXPECT_NE(nan.status().message().find("optimizer.step"), std::string::npos);
  s.Set(kOptimizerStepName, Tensor::FromFloats({1}, std::vector<float>{40}));
  absl::StatusOr<double> step = OptimizerStep(s);
  ASSERT_TRUE(step.ok());
  EXPECT_EQ(*step, 40.0);
}

TEST(OptimizerStateTest, MomentsAreCoveredLikeTheirTensor) {
  absl::StatusOr<TensorMap> state = WithZeroOptimizerState(TwoTensors());
  ASSERT_TRUE(state.ok());
  const std::string a = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
  Coverage trained;
  trained.tensors.push_back({a, 0, 1});  // a rank-1 client
  absl::StatusOr<Coverage> with = WithOptimizerStateCoverage(*state, trained);
  ASSERT_TRUE(with.ok()) << with.status();
  ASSERT_EQ(with->tensors.size(), 4u);
  EXPECT_EQ(with->tensors[0], (TensorCoverage{a, 0, 1}));
  EXPECT_EQ(with->tensors[1], (TensorCoverage{"optimizer.exp_avg." + a, 0, 1}));
  EXPECT_EQ(with->tensors[2], (TensorCoverage{"optimizer.exp_avg_sq." + a, 0, 1}));
  EXPECT_EQ(with->tensors[3], (TensorCoverage{"optimizer.step", -1, 0}));

  absl::StatusOr<Coverage> missing = WithOptimizerStateCoverage(TwoTensors(), trained);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("optimizer.exp_avg." + a), std::string::npos) << missing.status();
}

}  // namespace
}  // namespace fedfm::protocols
