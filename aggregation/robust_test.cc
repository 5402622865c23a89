#include "aggregation/robust.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "aggregation/aggregator.h"
#include "gtest/gtest.h"
#include "protocols/config/config.h"

namespace fedfm::aggregation {
namespace {

using protocols::AggregationOptions;
using protocols::DType;
using protocols::Tensor;
using protocols::TensorMap;
using protocols::Update;
using protocols::UpdateKind;

TEST(RobustRulesTest, Median) {
  std::vector<float> odd = {5, -1, 3, 100, 2};
  EXPECT_EQ(Median(odd), 3.0);
  std::vector<float> even = {4, 1, -7, 2};
  EXPECT_EQ(Median(even), 1.5);
  std::vector<float> one = {0.25f};
  EXPECT_EQ(Median(one), 0.25);
}

TEST(RobustRulesTest, TrimmedMean) {
  std::vector<float> v = {1, 2, 3, 4, 1000, -1000, 5, 6, 7, 8};
  EXPECT_EQ(TrimmedMean(v, 0.1), 4.5);  // drops 1 each side: mean of 1..8
  std::vector<float> w = {1, 2, 3};
  EXPECT_EQ(TrimmedMean(w, 0.2), 2.0);  // floor(0.6) = 0: plain mean
  std::vector<float> x = {1, 2, 9, 3};
  EXPECT_EQ(TrimmedMean(x, 0.25), 2.5);
}

TEST(RobustRulesTest, KrumPrefersTheCluster) {
  // Points on a line: 0, 1, 2, 3 clustered; 50 and 60 far away (f = 1).
  const std::vector<double> p = {0, 1, 2, 3, 50, 60};
  const int n = static_cast<int>(p.size());
  std::vector<double> d(n * n);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) d[i * n + j] = (p[i] - p[j]) * (p[i] - p[j]);
  }
  // Scores with n - f - 2 = 3 neighbours: 1 -> 1+1+4 = 6 and 2 -> 6 tie (smaller index wins).
  auto one = KrumSelect(d, n, 1, 1);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(*one, (std::vector<int>{1}));
  auto four = KrumSelect(d, n, 1, 4);
  ASSERT_TRUE(four.ok());
  std::vector<int> got = *four;
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3}));
  auto few = KrumSelect(d, n, 2, 1);  // needs 2f + 3 = 7
  EXPECT_EQ(few.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(few.status().message().find("at least 2f + 3 = 7"), std::string::npos);
}

TensorMap Global() {
  TensorMap g;
  g.Set("w", Tensor::FromFloats({2, 4}, std::vector<float>{0, 0, 0, 0, 0, 0, 0, 0}));
  g.Set("b", Tensor::FromFloats({3}, std::vector<float>{1, 1, 1}));
  return g;
}

const std::vector<float> kHonestW = {0.5f, -0.25f, 1.0f, 2.0f, -1.0f, 0.125f, 0.75f, -0.5f};
const std::vector<float> kHonestB = {0.1f, 0.2f, 0.3f};

// Honest clients: the honest value plus small noise; Byzantine: huge values.
std::vector<Update> Fleet(int honest, int byzantine, std::mt19937& rng) {
  std::normal_distribution<float> noise(0.0f, 0.01f);
  std::vector<Update> out;
  for (int c = 0; c < honest + byzantine; ++c) {
    const bool bad = c >= honest;
    Update u{.client_id = absl::StrCat(bad ? "byz-" : "honest-", c), .num_examples = bad ? 1000000u : 10u};
    std::vector<float> w = kHonestW, b = kHonestB;
    for (float& x : w) x = bad ? 1e6f * (c % 2 ? 1 : -3) : x + noise(rng);
    for (float& x : b) x = bad ? -5e5f : x + noise(rng);
    u.coverage.tensors = {{"w", -1, 0}, {"b", -1, 0}};
    u.delta.Set("w", Tensor::FromFloats({2, 4}, w));
    u.delta.Set("b", Tensor::FromFloats({3}, b));
    out.push_back(u);
  }
  return out;
}

TensorMap RunRound(const std::string& rule, const std::vector<Update>& updates, int byzantine = 2) {
  AggregationOptions o;
  o.robust = rule;
  o.trim_fraction = 0.25;
  o.byzantine = byzantine;
  auto agg = MakeAggregator(o, Global(), {});
  EXPECT_TRUE(agg.ok()) << agg.status();
  for (const Update& u : updates) EXPECT_TRUE((*agg)->Accept(u).ok());
  auto next = (*agg)->Finish();
  EXPECT_TRUE(next.ok()) << next.status();
  return next.ok() ? *next : TensorMap();
}

TEST(RobustAggregationTest, RecoverTheHonestValueDespiteOutliers) {
  std::mt19937 rng(1);
  const std::vector<Update> fleet = Fleet(/*honest=*/8, /*byzantine=*/2, rng);
  for (const char* rule : {"median", "trimmed_mean", "krum", "multi_krum"}) {
    SCOPED_TRACE(rule);
    TensorMap next = RunRound(rule, fleet);
    ASSERT_FALSE(next.empty());
    std::span<const float> w = next.at("w").floats();
    for (int i = 0; i < 8; ++i) EXPECT_NEAR(w[i], kHonestW[i], 0.05) << i;
    std::span<const float> b = next.at("b").floats();
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(b[i], 1.0f + kHonestB[i], 0.05) << i;
  }
  // The plain mean is wrecked by the same fleet.
  TensorMap mean = RunRound("none", fleet);
  EXPECT_GT(std::fabs(mean.at("w").floats()[0]), 1000.0f);
}

TEST(RobustAggregationTest, ArrivalOrderIndependentBitwise) {
  std::mt19937 rng(2);
  std::vector<Update> fleet = Fleet(9, 2, rng);
  for (const char* rule : {"median", "trimmed_mean", "krum", "multi_krum"}) {
    SCOPED_TRACE(rule);
    const TensorMap first = RunRound(rule, fleet);
    for (int trial = 0; trial < 3; ++trial) {
      std::shuffle(fleet.begin(), fleet.end(), rng);
      const TensorMap next = RunRound(rule, fleet);
      for (const std::string& name : first.names()) EXPECT_TRUE(next.at(name).Identical(first.at(name))) << name;
    }
  }
}

TEST(RobustAggregationTest, MedianUsesOnlyClientsThatCoveredTheCoordinate) {
  // Three rank-1 clients cover column 0 of w [2, 4] (rank_dim 1); one rank-4
  // client covers everything. Column 0 takes the median of four values;
  // columns 1..3 the only value there is.
  TensorMap g = Global();
  std::vector<Update> updates;
  const float col0[] = {1, 2, 3, 100};
  for (int c = 0; c < 4; ++c) {
    Update u{.client_id = absl::StrCat("c", c), .num_examples = 1};
    const int rank = c == 3 ? 4 : 1;
    u.coverage.tensors = {{"w", 1, rank}};
    std::vector<float> w(8, 0.0f);
    for (int row = 0; row < 2; ++row) {
      for (int col = 0; col < rank; ++col) w[row * 4 + col] = col == 0 ? col0[c] : 7.0f;
    }
    u.delta.Set("w", Tensor::FromFloats({2, 4}, w));
    updates.push_back(u);
  }
  TensorMap next = RunRound("median", updates);
  std::span<const float> w = next.at("w").floats();
  EXPECT_EQ(w[0], 2.5f);
  EXPECT_EQ(w[4], 2.5f);
  for (int col = 1; col < 4; ++col) EXPECT_EQ(w[col], 7.0f);
  EXPECT_TRUE(next.at("b").Identical(g.at("b")));  // nobody covered b
}

TEST(RobustAggregationTest, KrumWithTooFewUpdatesFailsTheRound) {
  std::mt19937 rng(3);
  AggregationOptions o;
  o.robust = "krum";
  o.byzantine = 2;  // needs 7
  auto agg = MakeAggregator(o, Global(), {});
  ASSERT_TRUE(agg.ok());
  for (const Update& u : Fleet(4, 1, rng)) ASSERT_TRUE((*agg)->Accept(u).ok());
  auto next = (*agg)->Finish();
  EXPECT_EQ(next.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(next.status().message().find("dense updates: Krum with f = 2"), std::string::npos) << next.status();
}

TEST(RobustAggregationTest, RejectsDifferentialPrivacy) {
  AggregationOptions o;
  o.robust = "median";
  protocols::DpOptions dp{.enabled = true};
  auto agg = MakeAggregator(o, Global(), RoundContext{.dp = &dp});
  EXPECT_EQ(agg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(agg.status().message().find("aggregation.robust = \"median\" cannot be combined with dp.enabled"),
            std::string::npos)
      << agg.status();
}

TEST(RobustAggregationTest, ConfigRejectsRobustWithSecureAggregation) {
  for (const char* rule : {"median", "trimmed_mean", "krum", "multi_krum"}) {
    protocols::RunConfig c;
    c.secagg.enabled = true;
    c.aggregation.robust = rule;
    absl::Status s = protocols::ValidateRunConfig(c);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    // Names both keys, the reason and the way out.
    for (const std::string& part :
         {absl::StrCat("aggregation.robust = \"", rule, "\""), std::string("secagg.enabled = true"),
          std::string("needs every update in the clear"), std::string("set aggregation.robust = \"none\"")}) {
      EXPECT_NE(s.message().find(part), std::string::npos) << part << " in: " << s;
    }
  }
  protocols::RunConfig ok;
  ok.secagg.enabled = true;
  EXPECT_TRUE(protocols::ValidateRunConfig(ok).ok());
  ok.secagg.enabled = false;
  ok.aggregation.robust = "krum";
  EXPECT_TRUE(protocols::ValidateRunConfig(ok).ok());
}

TEST(RobustAggregationTest, ConfigRejectsRobustWithDpAndKrumWithTooFewClients) {
  protocols::RunConfig dp;
  dp.dp.enabled = true;
  dp.aggregation.robust = "trimmed_mean";
  absl::Status s = protocols::ValidateRunConfig(dp);
  EXPECT_NE(s.message().find("aggregation.robust = \"trimmed_mean\" cannot be combined with dp.enabled = true"),
            std::string::npos)
      << s;
  protocols::RunConfig krum;
  krum.aggregation.robust = "krum";
  krum.aggregation.byzantine = 3;
  krum.rounds.clients_per_round = 8;
  krum.rounds.min_clients = 2;
  s = protocols::ValidateRunConfig(krum);
  EXPECT_NE(s.message().find("needs at least 2f + 3 = 9 updates per round, but rounds.clients_per_round = 8"),
            std::string::npos)
      << s;
  krum.rounds.clients_per_round = 9;
  EXPECT_TRUE(protocols::ValidateRunConfig(krum).ok());
}

class ScaleReplay : public SeedReplay {
 public:
  absl::Status Apply(const std::vector<uint64_t>& seeds, const std::vector<float>& weights,
                     TensorMap& delta) override {
    Tensor t = Tensor::Zeros(DType::kF32, {3});
    for (size_t k = 0; k < seeds.size(); ++k) t.mutable_floats()[k % 3] += weights[k];
    delta.Set("b", t);
    return absl::OkStatus();
  }
};

TEST(RobustAggregationTest, SeedScalarGroupIsRobustToo) {
  // Five seed-scalar clients, one Byzantine; median per seed.
  ScaleReplay replay;
  AggregationOptions o;
  o.robust = "median";
  auto agg = MakeAggregator(o, Global(), RoundContext{.seed_pool = {1, 2, 3}, .seed_replay = &replay});
  ASSERT_TRUE(agg.ok());
  for (int c = 0; c < 5; ++c) {
    Update u{.client_id = absl::StrCat("z", c), .num_examples = 1, .kind = UpdateKind::kSeedScalars};
    u.seed_scalars = c == 4 ? std::vector<float>{1e9f, -1e9f, 1e9f} : std::vector<float>{0.1f * c, 1, -1};
    ASSERT_TRUE((*agg)->Accept(u).ok());
  }
  auto next = (*agg)->Finish();
  ASSERT_TRUE(next.ok()) << next.status();
  // Medians: {0, .1, .2, .3, 1e9} -> 0.2; {1,1,1,1,-1e9} -> 1; {-1,-1,-1,-1,1e9} -> -1.
  std::span<const float> b = next->at("b").floats();
  EXPECT_NEAR(b[0], 1.2f, 1e-6);
  EXPECT_NEAR(b[1], 2.0f, 1e-6);
  EXPECT_NEAR(b[2], 0.0f, 1e-6);
}

TEST(RobustAggregationTest, ZoMixingJoinsTheReplayToTheRobustDenseValue) {
  // Three dense clients cover "b" (median kHonestB, the Byzantine one out)
  // and two seed-scalar clients replay {0.5, 1, -1} (their median) into it.
  std::mt19937 rng(3);
  std::vector<Update> fleet = Fleet(2, 1, rng);
  for (Update& u : fleet) u.delta.Set("b", Tensor::FromFloats({3}, kHonestB));
  fleet[2].delta.Set("b", Tensor::FromFloats({3}, std::vector<float>{9, 9, 9}));
  auto run = [&](const std::string& mixing) {
    ScaleReplay replay;
    AggregationOptions o;
    o.robust = "median";
    o.zo_mixing = mixing;
    auto agg = MakeAggregator(o, Global(), RoundContext{.seed_pool = {1, 2, 3}, .seed_replay = &replay});
    EXPECT_TRUE(agg.ok()) << agg.status();
    for (const Update& u : fleet) EXPECT_TRUE((*agg)->Accept(u).ok());
    for (int c = 0; c < 2; ++c) {
      Update u{.client_id = absl::StrCat("z", c), .num_examples = 1, .kind = UpdateKind::kSeedScalars};
      u.seed_scalars = {0.5f, 1, -1};
      EXPECT_TRUE((*agg)->Accept(u).ok());
    }
    auto next = (*agg)->Finish();
    EXPECT_TRUE(next.ok()) << next.status();
    return std::vector<float>(next->at("b").floats().begin(), next->at("b").floats().end());
  };
  const std::vector<float> zo = {0.5f, 1, -1};
  const std::vector<float> share = run("share"), mean = run("mean"), snr = run("snr");
  for (int i = 0; i < 3; ++i) {
    // Robust rules count clients: 3 dense, 2 seed-scalar; b starts at 1.
    EXPECT_NEAR(share[i], 1 + kHonestB[i] + zo[i] * 2 / 5, 1e-6) << i;
    EXPECT_NEAR(mean[i], 1 + (3 * kHonestB[i] + 2 * zo[i]) / 5, 1e-6) << i;
    // "snr": 3 pool slots used, the replay wrote the 3 elements of b.
    EXPECT_NEAR(snr[i], 1 + kHonestB[i] + zo[i] * 2 / 5 * 3 / 6, 1e-6) << i;
  }
}

}  // namespace
}  // namespace fedfm::aggregation
