#include "aggregation/server_optimizer.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace fedfm::aggregation {
namespace {

using protocols::AggregationOptions;
using protocols::DType;
using protocols::Tensor;
using protocols::TensorMap;

TensorMap Map(const std::vector<float>& w) {
  TensorMap m;
  m.Set("w", Tensor::FromFloats({static_cast<int64_t>(w.size())}, w));
  return m;
}

std::vector<float> Values(const TensorMap& m) {
  std::span<const float> f = m.at("w").floats();
  return {f.begin(), f.end()};
}

// Δ of rounds 1..3 on x0 = (1, -2).
const std::vector<std::vector<float>> kDeltas = {{0.5f, -1.0f}, {-0.25f, 0.5f}, {0.1f, 0.2f}};

std::unique_ptr<ServerOptimizer> Make(const std::string& algorithm, double lr) {
  AggregationOptions o;
  o.algorithm = algorithm;
  o.server_lr = lr;
  o.momentum = 0.9;
  o.beta1 = 0.9;
  o.beta2 = 0.99;
  o.tau = 1e-3;
  auto opt = MakeServerOptimizer(o);
  EXPECT_TRUE(opt.ok()) << opt.status();
  return std::move(opt).value();
}

// Expected x after each of three rounds, worked out by hand (in double) from
// Reddi et al. Algorithm 2 with η = 0.1, β1 = 0.9, β2 = 0.99, τ = 1e-3,
// m_{-1} = 0, v_{-1} = τ². E.g. FedAdam, coordinate 0, round 1:
// m = 0.1·0.5 = 0.05; v = 0.99·1e-6 + 0.01·0.25 = 0.00250099;
// x = 1 + 0.1·0.05 / (√0.00250099 + 0.001) = 1.09802019.
struct Expected {
  const char* algorithm;
  double lr;
  std::vector<std::vector<double>> x;
};

const Expected kExpected[] = {
    {"fedadam", 0.1, {{1.0980201901, -2.0990050489}, {1.1333019937, -2.1346050054}, {1.1821654905, -2.1486904978}}},
    {"fedyogi", 0.1, {{1.0980199980, -2.0990049999}, {1.1331628095, -2.1344635186}, {1.1816074868, -2.1484272481}}},
    {"fedadagrad", 0.1, {{1.0099800200, -2.0099900050}, {1.0135513345, -2.0135645152}, {1.0184731850, -2.0149719969}}},
    // FedAvgM, η = 0.5, μ = 0.9: m = (0.5, -1), (0.2, -0.4), (0.28, -0.16).
    {"fedavgm", 0.5, {{1.25, -2.5}, {1.35, -2.7}, {1.49, -2.78}}},
    // FedAvg, η = 0.5: x += 0.5 Δ.
    {"fedavg", 0.5, {{1.25, -2.5}, {1.125, -2.25}, {1.175, -2.15}}},
};

TEST(AggregationServerOptimizerTest, MatchesHandComputedSteps) {
  for (const Expected& e : kExpected) {
    SCOPED_TRACE(e.algorithm);
    auto opt = Make(e.algorithm, e.lr);
    EXPECT_STREQ(opt->name(), e.algorithm);
    TensorMap x = Map({1.0f, -2.0f});
    for (size_t r = 0; r < kDeltas.size(); ++r) {
      auto next = opt->Step(x, Map(kDeltas[r]));
      ASSERT_TRUE(next.ok()) << next.status();
      x = *next;
      std::vector<float> got = Values(x);
      EXPECT_NEAR(got[0], e.x[r][0], 2e-6) << "round " << r + 1;
      EXPECT_NEAR(got[1], e.x[r][1], 2e-6) << "round " << r + 1;
    }
    EXPECT_EQ(opt->steps(), 3);
  }
}

TEST(AggregationServerOptimizerTest, StateRoundTripResumesBitIdentically) {
  for (const char* algorithm : {"fedavg", "fedavgm", "fedadam", "fedyogi", "fedadagrad"}) {
    SCOPED_TRACE(algorithm);
    auto a = Make(algorithm, 0.1);
    TensorMap x = Map({1.0f, -2.0f});
    x = *a->Step(x, Map(kDeltas[0]));
    x = *a->Step(x, Map(kDeltas[1]));
    TensorMap saved = a->State();
    // A restarted coordinator: fresh optimizer, state loaded from the store.
    auto b = Make(algorithm, 0.1);
    ASSERT_TRUE(b->LoadState(saved).ok());
    EXPECT_EQ(b->steps(), 2);
    TensorMap xa = *a->Step(x, Map(kDeltas[2]));
    TensorMap xb = *b->Step(x, Map(kDeltas[2]));
    EXPECT_TRUE(xa.at("w").Identical(xb.at("w")));
    TensorMap sa = a->State(), sb = b->State();
    ASSERT_EQ(sa.names(), sb.names());
    for (const std::string& k : sa.names()) EXPECT_TRUE(sa.at(k).Identical(sb.at(k))) << k;
  }
}

TEST(AggregationServerOptimizerTest, StateLayout) {
  auto opt = Make("fedadam", 0.1);
  EXPECT_EQ(opt->State().names(), (std::vector<std::string>{"step"}));
  ASSERT_TRUE(opt->Step(Map({1.0f, -2.0f}), Map(kDeltas[0])).ok());
  EXPECT_EQ(opt->State().names(), (std::vector<std::string>{"step", "m/w", "v/w"}));
  auto avgm = Make("fedavgm", 0.1);
  ASSERT_TRUE(avgm->Step(Map({1.0f, -2.0f}), Map(kDeltas[0])).ok());
  EXPECT_EQ(avgm->State().names(), (std::vector<std::string>{"step", "m/w"}));
}

TEST(AggregationServerOptimizerTest, LoadStateRejectsForeignKeys) {
  auto adam = Make("fedadam", 0.1);
  ASSERT_TRUE(adam->Step(Map({1.0f, -2.0f}), Map(kDeltas[0])).ok());
  auto avgm = Make("fedavgm", 0.1);
  absl::Status s = avgm->LoadState(adam->State());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("\"v/w\" is not part of the fedavgm optimizer state"), std::string::npos) << s;
  TensorMap no_step;
  no_step.Set("m/w", Tensor::Zeros(DType::kF32, {2}));
  EXPECT_FALSE(avgm->LoadState(no_step).ok());
}

TEST(AggregationServerOptimizerTest, ShapeMismatchLeavesStateUntouched) {
  auto opt = Make("fedadam", 0.1);
  ASSERT_TRUE(opt->Step(Map({1.0f, -2.0f}), Map(kDeltas[0])).ok());
  TensorMap before = opt->State();
  auto bad = opt->Step(Map({1.0f, -2.0f, 3.0f}), Map({0.1f, 0.2f, 0.3f}));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("\"m/w\" has shape [2]"), std::string::npos) << bad.status();
  TensorMap after = opt->State();
  for (const std::string& k : before.names()) EXPECT_TRUE(before.at(k).Identical(after.at(k))) << k;
  auto missing = opt->Step(Map({1.0f, -2.0f}), TensorMap());
  EXPECT_FALSE(missing.ok());
}

TEST(AggregationServerOptimizerTest, KeepsGlobalDtypeAndAddsTensorsLazily) {
  auto opt = Make("fedadam", 0.1);
  TensorMap x;
  x.Set("w", Tensor::FromFloats({2}, std::vector<float>{1.0f, -2.0f}).To(DType::kBF16));
  auto next = opt->Step(x, Map(kDeltas[0]));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->at("w").dtype(), DType::kBF16);
  EXPECT_NEAR(next->at("w").ToFloat32()[0], 1.0980, 1e-2);
  // A tensor joining the global state in round 2 (progressive training).
  TensorMap x2 = *next;
  x2.Set("u", Tensor::FromFloats({1}, std::vector<float>{0.0f}));
  TensorMap d2 = Map(kDeltas[1]);
  d2.Set("u", Tensor::FromFloats({1}, std::vector<float>{0.5f}));
  auto next2 = opt->Step(x2, d2);
  ASSERT_TRUE(next2.ok()) << next2.status();
  // First step of "u": same as round 1 of coordinate 0 above.
  EXPECT_NEAR(next2->at("u").floats()[0], 0.0980202, 2e-6);
}

TEST(AggregationServerOptimizerTest, RejectsBadOptions) {
  AggregationOptions o;
  o.algorithm = "fedsgd";
  EXPECT_FALSE(MakeServerOptimizer(o).ok());
  o.algorithm = "fedadam";
  o.tau = 0;
  auto s = MakeServerOptimizer(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("aggregation.tau"), std::string::npos);
}

}  // namespace
}  // namespace fedfm::aggregation
