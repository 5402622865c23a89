#include "aggregation/dp.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "aggregation/aggregator.h"
#include "gtest/gtest.h"

namespace fedfm::aggregation {
namespace {

using protocols::AggregationOptions;
using protocols::DpOptions;
using protocols::DType;
using protocols::Tensor;
using protocols::TensorMap;
using protocols::Update;
using protocols::UpdateKind;

Update Dense(const std::string& id, std::vector<float> a, std::vector<float> b) {
  Update u{.client_id = id, .num_examples = 7};
  u.coverage.tensors = {{"a", -1, 0}, {"b", 1, 1}};  // b: [2, 2], first column only
  u.delta.Set("a", Tensor::FromFloats({static_cast<int64_t>(a.size())}, a));
  u.delta.Set("b", Tensor::FromFloats({2, 2}, b));
  return u;
}

TEST(DpClipTest, ClipsToTheNormAndReportsTheOriginal) {
  Update u = Dense("c", {3, 0, 0}, {4, 0, 0, 0});  // norm 5
  EXPECT_DOUBLE_EQ(UpdateL2Norm(u), 5.0);
  EXPECT_DOUBLE_EQ(ClipUpdate(u, 1.0), 5.0);
  EXPECT_NEAR(UpdateL2Norm(u), 1.0, 1e-7);
  EXPECT_FLOAT_EQ(u.delta.at("a").floats()[0], 0.6f);
  EXPECT_FLOAT_EQ(u.delta.at("b").floats()[0], 0.8f);
  // Under the norm: untouched, bit for bit.
  Update small = Dense("s", {0.3f, 0.1f, 0}, {0.2f, 0, -0.1f, 0});
  Update copy = small;
  ClipUpdate(small, 1.0);
  EXPECT_TRUE(small.delta.at("a").Identical(copy.delta.at("a")));
  EXPECT_TRUE(small.delta.at("b").Identical(copy.delta.at("b")));
  // Seed scalars clip as a K-vector.
  Update z{.client_id = "z", .num_examples = 1, .kind = UpdateKind::kSeedScalars, .seed_scalars = {6, 8}};
  EXPECT_DOUBLE_EQ(ClipUpdate(z, 2.0), 10.0);
  EXPECT_EQ(z.seed_scalars, (std::vector<float>{1.2f, 1.6f}));
}

TEST(DpClipTest, RandomUpdatesEndAtMostAtTheClipNorm) {
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> a(50), b(4, 0.0f);
    for (float& x : a) x = normal(rng);
    b[0] = normal(rng);
    b[2] = normal(rng);
    Update u = Dense("r", a, b);
    const double before = UpdateL2Norm(u);
    ClipUpdate(u, 2.5);
    EXPECT_NEAR(UpdateL2Norm(u), std::min(before, 2.5), 1e-5);
  }
}

TEST(DpGaussianStreamTest, DeterministicPerSeedAndStandardNormal) {
  GaussianStream a(42), b(42), c(43);
  EXPECT_EQ(a.At(0), b.At(0));
  EXPECT_EQ(a.At(123456), b.At(123456));
  EXPECT_NE(a.At(0), c.At(0));
  const int n = 200000;
  double sum = 0, sum2 = 0, sum4 = 0;
  for (int i = 0; i < n; ++i) {
    const double x = a.At(i);
    sum += x;
    sum2 += x * x;
    sum4 += x * x * x * x;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.01);
  EXPECT_NEAR(sum2 / n, 1.0, 0.015);
  EXPECT_NEAR(sum4 / n, 3.0, 0.1);  // Gaussian kurtosis
}

TEST(DpDistributedNoiseTest, NoisesCoveredCoordinatesOnly) {
  DpOptions dp{.enabled = true, .mode = "distributed", .clip_norm = 1.0, .noise_multiplier = 2.0};
  Update u = Dense("c", {3, 0, 0}, {4, 0, 0, 0});
  auto norm = ClipAndAddDistributedNoise(u, dp, /*num_clients=*/4, /*seed=*/9);
  ASSERT_TRUE(norm.ok()) << norm.status();
  EXPECT_DOUBLE_EQ(*norm, 5.0);
  std::span<const float> b = u.delta.at("b").floats();
  EXPECT_EQ(b[1], 0.0f);  // column 1 is outside the coverage
  EXPECT_EQ(b[3], 0.0f);
  EXPECT_NE(b[2], 0.0f);
  // Same seed, same update: same noise.
  Update again = Dense("c", {3, 0, 0}, {4, 0, 0, 0});
  ASSERT_TRUE(ClipAndAddDistributedNoise(again, dp, 4, 9).ok());
  EXPECT_TRUE(again.delta.at("a").Identical(u.delta.at("a")));
  EXPECT_TRUE(again.delta.at("b").Identical(u.delta.at("b")));
  EXPECT_FALSE(ClipAndAddDistributedNoise(again, dp, 0, 9).ok());
}

TEST(DpDistributedNoiseTest, SumOfClientNoiseHasTheCentralVariance) {
  // n clients each add N(0, σ²C²/n): the sum carries N(0, σ²C²).
  const int n = 8, d = 4000;
  DpOptions dp{.enabled = true, .mode = "distributed", .clip_norm = 0.5, .noise_multiplier = 1.5};
  std::vector<double> sum(d, 0.0);
  for (int c = 0; c < n; ++c) {
    Update u{.client_id = absl::StrCat("c", c), .num_examples = 1};
    u.coverage.tensors = {{"a", -1, 0}};
    u.delta.Set("a", Tensor::Zeros(DType::kF32, {d}));
    ASSERT_TRUE(ClipAndAddDistributedNoise(u, dp, n, /*seed=*/1000 + c).ok());
    for (int i = 0; i < d; ++i) sum[i] += u.delta.at("a").floats()[i];
  }
  double var = 0;
  for (double x : sum) var += x * x;
  var /= d;
  const double target = 1.5 * 1.5 * 0.5 * 0.5;
  EXPECT_NEAR(var, target, 0.06 * target);
}

TensorMap Global() {
  TensorMap g;
  g.Set("a", Tensor::Zeros(DType::kF32, {3}));
  g.Set("b", Tensor::Zeros(DType::kF32, {2, 2}));
  return g;
}

TEST(DpCentralAggregationTest, ClipsEachUpdateAndWeighsClientsEqually) {
  DpOptions dp{.enabled = true, .mode = "central", .clip_norm = 1.0, .noise_multiplier = 0.0};
  auto agg = MakeAggregator(AggregationOptions{}, Global(), RoundContext{.dp = &dp});
  ASSERT_TRUE(agg.ok()) << agg.status();
  Update big = Dense("big", {30, 0, 0}, {40, 0, 0, 0});  // norm 50 -> (0.6, 0.8)
  big.num_examples = 1000;
  Update small = Dense("small", {0, 0.5f, 0}, {0, 0, 0, 0});  // under the clip
  small.num_examples = 1;
  ASSERT_TRUE((*agg)->Accept(big).ok());
  ASSERT_TRUE((*agg)->Accept(small).ok());
  auto next = (*agg)->Finish();
  ASSERT_TRUE(next.ok()) << next.status();
  std::span<const float> a = next->at("a").floats();
  EXPECT_NEAR(a[0], 0.3, 1e-6);   // (0.6 + 0) / 2, not weighted by examples
  EXPECT_NEAR(a[1], 0.25, 1e-6);
  EXPECT_NEAR(next->at("b").floats()[0], 0.4, 1e-6);
}

TEST(DpCentralAggregationTest, NoiseIsSeededAndHasStddevSigmaCOverCount) {
  const int d = 3000, clients = 4;
  DpOptions dp{.enabled = true, .mode = "central", .clip_norm = 2.0, .noise_multiplier = 1.25};
  TensorMap global;
  global.Set("w", Tensor::Zeros(DType::kF32, {d}));
  auto run = [&](uint64_t seed) {
    auto agg = MakeAggregator(AggregationOptions{}, global, RoundContext{.dp = &dp, .noise_seed = seed});
    EXPECT_TRUE(agg.ok());
    for (int c = 0; c < clients; ++c) {
      Update u{.client_id = absl::StrCat("c", c), .num_examples = 1};
      u.coverage.tensors = {{"w", -1, 0}};
      u.delta.Set("w", Tensor::Zeros(DType::kF32, {d}));
      EXPECT_TRUE((*agg)->Accept(u).ok());
    }
    return *(*agg)->Finish();
  };
  TensorMap x = run(5), y = run(5), z = run(6);
  EXPECT_TRUE(x.at("w").Identical(y.at("w")));
  EXPECT_FALSE(x.at("w").Identical(z.at("w")));
  double var = 0;
  for (float v : x.at("w").floats()) var += static_cast<double>(v) * v;
  var /= d;
  const double target = std::pow(1.25 * 2.0 / clients, 2);  // noise on the sum, divided by the count
  EXPECT_NEAR(var, target, 0.08 * target);
}

class IdentityReplay : public SeedReplay {
 public:
  // delta["a"][k] = weights[k]: the mean scalars land in "a" unchanged.
  absl::Status Apply(const std::vector<uint64_t>&, const std::vector<float>& weights, TensorMap& delta) override {
    Tensor t = Tensor::Zeros(DType::kF32, {3});
    for (size_t k = 0; k < weights.size(); ++k) t.mutable_floats()[k] = weights[k];
    delta.Set("a", t);
    return absl::OkStatus();
  }
};

TEST(DpCentralAggregationTest, ClipsSeedScalarVectors) {
  DpOptions dp{.enabled = true, .mode = "central", .clip_norm = 1.0, .noise_multiplier = 0.0};
  IdentityReplay replay;
  auto agg = MakeAggregator(AggregationOptions{}, Global(),
                            RoundContext{.seed_pool = {7, 8, 9}, .seed_replay = &replay, .dp = &dp});
  ASSERT_TRUE(agg.ok()) << agg.status();
  Update z1{.client_id = "z1", .num_examples = 50, .kind = UpdateKind::kSeedScalars, .seed_scalars = {3, 4, 0}};
  Update z2{.client_id = "z2", .num_examples = 1, .kind = UpdateKind::kSeedScalars, .seed_scalars = {0, 0, 0.5f}};
  ASSERT_TRUE((*agg)->Accept(z1).ok());
  ASSERT_TRUE((*agg)->Accept(z2).ok());
  auto next = (*agg)->Finish();
  ASSERT_TRUE(next.ok()) << next.status();
  // z1 clipped to (0.6, 0.8, 0); equal weights: mean (0.3, 0.4, 0.25).
  std::span<const float> a = next->at("a").floats();
  EXPECT_NEAR(a[0], 0.3, 1e-6);
  EXPECT_NEAR(a[1], 0.4, 1e-6);
  EXPECT_NEAR(a[2], 0.25, 1e-6);
}

TEST(DpDistributedAggregationTest, ServerNeitherClipsNorNoisesButWeighsEqually) {
  DpOptions dp{.enabled = true, .mode = "distributed", .clip_norm = 1.0, .noise_multiplier = 3.0};
  auto agg = MakeAggregator(AggregationOptions{}, Global(), RoundContext{.dp = &dp, .noise_seed = 1});
  ASSERT_TRUE(agg.ok()) << agg.status();
  Update x = Dense("x", {30, 0, 0}, {0, 0, 0, 0});
  x.num_examples = 100;
  Update y = Dense("y", {10, 2, 0}, {0, 0, 0, 0});
  y.num_examples = 1;
  ASSERT_TRUE((*agg)->Accept(x).ok());
  ASSERT_TRUE((*agg)->Accept(y).ok());
  auto next = (*agg)->Finish();
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->at("a").floats()[0], 20.0f);  // (30 + 10) / 2: no clip, no noise, no example weights
  EXPECT_EQ(next->at("a").floats()[1], 1.0f);
  EXPECT_EQ(next->at("a").floats()[2], 0.0f);
}

TEST(DpCentralAggregationTest, RejectsBadOptions) {
  DpOptions dp{.enabled = true, .mode = "local"};
  EXPECT_FALSE(MakeAggregator(AggregationOptions{}, Global(), RoundContext{.dp = &dp}).ok());
  dp.mode = "central";
  dp.clip_norm = 0;
  EXPECT_FALSE(MakeAggregator(AggregationOptions{}, Global(), RoundContext{.dp = &dp}).ok());
}

}  // namespace
}  // namespace fedfm::aggregation
