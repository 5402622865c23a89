#include "client/testing/fake_trainer.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace fedfm::client {
namespace {

using protocols::Tensor;
using protocols::TensorMap;

TensorMap State() {
  TensorMap g;
  g.Set("a.lora_A", Tensor::FromFloats({3, 2}, std::vector<float>{0.3f, -0.1f, 0.7f, 0.2f, -0.4f, 0.9f}));
  g.Set("head", Tensor::FromFloats({4}, std::vector<float>{0.5f, 0.25f, -0.75f, 1.0f}));
  return g;
}

protocols::Task DenseTask() {
  protocols::Task t;
  t.local_steps = 2;
  t.batch_size = 3;
  t.learning_rate = 0.2;
  t.round_seed = 5;
  t.coverage.tensors = {{"a.lora_A", 0, 1}, {"head", -1, 0}};
  return t;
}

// Adds `delta` to `state` over the delta's tensors.
TensorMap Apply(const TensorMap& state, const TensorMap& delta) {
  TensorMap out = state;
  for (const auto& [name, d] : delta) {
    std::span<float> v = out.FindMutable(name)->mutable_floats();
    for (size_t i = 0; i < v.size(); ++i) v[i] += d.floats()[i];
  }
  return out;
}

TEST(FakeTrainerTest, DenseUpdatesStayInTheCoverageAndLowerTheLoss) {
  FakeTrainer trainer({.quality = 1.0});
  Dataset data;
  TensorMap state = State();
  auto u = trainer.Train(DenseTask(), state, data);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->num_examples, 6u);
  EXPECT_EQ(u->coverage, DenseTask().coverage);
  ASSERT_TRUE(protocols::ValidateDenseUpdate(*u, State()).ok());
  // Rows beyond rank 1 of lora_A are untouched.
  std::span<const float> a = u->delta.at("a.lora_A").floats();
  EXPECT_NE(a[0], 0.0f);
  EXPECT_EQ(a[2], 0.0f);
  EXPECT_EQ(a[5], 0.0f);
  EXPECT_LT(trainer.Loss(Apply(State(), u->delta)), trainer.Loss(State()));
  EXPECT_NEAR(u->metrics.at("train_loss"), trainer.Loss(State()), 1e-12);
  // Deterministic.
  TensorMap again = State();
  auto v = trainer.Train(DenseTask(), again, data);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->delta.at("head").Identical(u->delta.at("head")));
}

TEST(FakeTrainerTest, LowQualityAddsSeededNoise) {
  FakeTrainer good({.quality = 1.0}), noisy({.quality = 0.0, .noise_scale = 0.5});
  Dataset data;
  TensorMap s1 = State(), s2 = State();
  auto a = good.Train(DenseTask(), s1, data);
  auto b = noisy.Train(DenseTask(), s2, data);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_FALSE(a->delta.at("head").Identical(b->delta.at("head")));
  for (float x : b->delta.at("head").floats()) EXPECT_LE(std::abs(x), 0.5f);
}

TEST(FakeTrainerTest, SeedScalarsAreProjectionsOnTheDirections) {
  // z_seed = seed on every element: s_k = <θ - T, z_k> / numel.
  FakeTrainerOptions o;
  o.direction = [](uint64_t seed, const TensorMap& like) -> absl::StatusOr<TensorMap> {
    TensorMap z;
    for (const auto& [name, t] : like) {
      std::vector<float> v(t.numel(), static_cast<float>(seed));
      z.Set(name, Tensor::FromFloats(t.shape(), v));
    }
    return z;
  };
  FakeTrainer trainer(o);
  protocols::Task t = DenseTask();
  t.seed_pool = {1, 3};
  Dataset data;
  TensorMap state = State();
  auto u = trainer.Train(t, state, data);
  ASSERT_TRUE(u.ok()) << u.status();
  ASSERT_EQ(u->kind, protocols::UpdateKind::kSeedScalars);
  ASSERT_EQ(u->seed_scalars.size(), 2u);
  const TensorMap target = trainer.Target(State());
  double diff = 0;
  for (const auto& [name, x] : State()) {
    for (int64_t i = 0; i < x.numel(); ++i) diff += x.floats()[i] - target.at(name).floats()[i];
  }
  EXPECT_NEAR(u->seed_scalars[0], diff / 10, 1e-6);
  EXPECT_NEAR(u->seed_scalars[1], 3 * diff / 10, 1e-6);

  FakeTrainer blind;
  EXPECT_EQ(blind.Train(t, state, data).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(FakeTrainerTest, EvaluateReportsTheLoss) {
  FakeTrainer trainer({.target_seed = 3});
  Dataset data;
  data.eval.resize(5);
  auto r = trainer.Evaluate(DenseTask(), State(), data);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->num_examples, 5u);
  EXPECT_NEAR(r->metrics.at("eval_loss"), trainer.Loss(State()), 1e-12);
  EXPECT_NEAR(r->metrics.at("eval_accuracy"), std::exp(-trainer.Loss(State())), 1e-12);
  FakeTrainer other({.target_seed = 4});
  EXPECT_NE(other.Loss(State()), trainer.Loss(State()));
}

}  // namespace
}  // namespace fedfm::client
