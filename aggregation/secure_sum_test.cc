// Aggregator::AcceptSecureSum against the plaintext path: a secure sum of
// weight-premultiplied contributions must give the same next global state as
// Accept() of every contributor's update.
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "aggregation/aggregator.h"
#include "aggregation/secagg/fixed_point.h"
#include "gtest/gtest.h"

namespace fedfm::aggregation {
namespace {

using protocols::DType;
using protocols::Shape;
using protocols::Tensor;
using protocols::TensorCoverage;
using protocols::TensorMap;
using protocols::Update;
using protocols::UpdateKind;

//   lora_A: [r=4, in=3]   rank_dim 0
//   lora_B: [out=5, r=4]  rank_dim 1
//   head:   [6]
//   frozen: [2]           nobody trains it
TensorMap Global() {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1, 1);
  TensorMap g;
  for (auto [name, shape] : {std::pair<const char*, Shape>{"lora_A", {4, 3}}, {"lora_B", {5, 4}},
                             {"head", {6}}, {"frozen", {2}}}) {
    std::vector<float> v(protocols::NumElements(shape));
    for (float& x : v) x = u(rng);
    g.Set(name, Tensor::FromFloats(shape, v));
  }
  return g;
}

Tensor RandomCovered(const Shape& shape, const TensorCoverage& c, std::mt19937& rng) {
  Tensor t = Tensor::Zeros(DType::kF32, shape);
  std::uniform_real_distribution<float> u(-0.4f, 0.4f);
  std::span<float> v = t.mutable_floats();
  protocols::ForEachCovered(t, c, [&](int64_t i) { v[i] = u(rng); });
  return t;
}

Update Lora(const std::string& id, uint64_t n, int rank, std::mt19937& rng) {
  const TensorMap g = Global();
  Update u{.client_id = id, .num_examples = n};
  for (auto [name, dim] : {std::pair<const char*, int>{"lora_A", 0}, {"lora_B", 1}}) {
    TensorCoverage c{name, dim, rank};
    u.coverage.tensors.push_back(c);
    u.delta.Set(name, RandomCovered(g.at(name).shape(), c, rng));
  }
  return u;
}

Update Head(const std::string& id, uint64_t n, std::mt19937& rng) {
  Update u{.client_id = id, .num_examples = n};
  TensorCoverage c{"head", -1, 0};
  u.coverage.tensors.push_back(c);
  u.delta.Set("head", RandomCovered({6}, c, rng));
  return u;
}

Update Seeds(const std::string& id, uint64_t n, size_t k, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  Update up{.client_id = id, .num_examples = n, .kind = UpdateKind::kSeedScalars};
  for (size_t i = 0; i < k; ++i) up.seed_scalars.push_back(u(rng));
  return up;
}

// A linear replay: seed s writes (s % 7 + 1) / 10 * weight into every
// element of lora_A and head.
class TestReplay final : public SeedReplay {
 public:
  absl::Status Apply(const std::vector<uint64_t>& seeds, const std::vector<float>& weights,
                     TensorMap& delta) override {
    const TensorMap g = Global();
    for (const char* name : {"lora_A", "head"}) {
      Tensor t = Tensor::Zeros(DType::kF32, g.at(name).shape());
      double s = 0;
      for (size_t k = 0; k < seeds.size(); ++k) s += (seeds[k] % 7 + 1) / 10.0 * weights[k];
      for (float& x : t.mutable_floats()) x = static_cast<float>(s);
      delta.Set(name, t);
    }
    return absl::OkStatus();
  }
};

// Σ_i (n_i / unit) δ_i in double, rounded to float once (dense), or of the
// seed scalars.
SecureSum PlainSum(const std::vector<Update>& updates, uint64_t unit, bool dp = false) {
  SecureSum s;
  s.kind = updates.front().kind;
  s.weight_unit = unit;
  const TensorMap g = Global();
  std::map<std::string, std::vector<double>> acc;
  std::vector<double> seeds;
  for (const Update& u : updates) {
    const double w = (dp ? 1.0 : static_cast<double>(u.num_examples)) / static_cast<double>(unit);
    s.contributors.push_back({u.client_id, u.num_examples, u.coverage});
    if (u.kind == UpdateKind::kSeedScalars) {
      seeds.resize(u.seed_scalars.size(), 0.0);
      for (size_t k = 0; k < seeds.size(); ++k) seeds[k] += w * u.seed_scalars[k];
      continue;
    }
    for (const auto& [name, t] : u.delta) {
      auto& a = acc[name];
      a.resize(t.numel(), 0.0);
      for (int64_t i = 0; i < t.numel(); ++i) a[i] += w * t.floats()[i];
    }
  }
  for (double x : seeds) s.seed_scalars.push_back(static_cast<float>(x));
  for (const auto& [name, a] : acc) {
    std::vector<float> f(a.begin(), a.end());
    s.delta.Set(name, Tensor::FromFloats(g.at(name).shape(), f));
  }
  return s;
}

// The same sum through SecAgg's fixed-point encoding (mod 2^32 sums).
SecureSum FixedPointSum(const std::vector<Update>& updates, uint64_t unit, const secagg::FixedPointCodec& codec) {
  SecureSum s = PlainSum(updates, unit);
  for (auto& [name, t] : s.delta) {
    std::vector<uint32_t> total(t.numel(), 0), enc(t.numel());
    for (const Update& u : updates) {
      const Tensor* d = u.delta.Find(name);
      std::vector<float> scaled(t.numel(), 0.0f);
      if (d != nullptr) {
        for (int64_t i = 0; i < t.numel(); ++i) {
          scaled[i] = static_cast<float>(d->floats()[i] * (static_cast<double>(u.num_examples) / unit));
        }
      }
      EXPECT_TRUE(codec.Encode(scaled, enc).ok());
      for (int64_t i = 0; i < t.numel(); ++i) total[i] += enc[i];
    }
    codec.Decode(total, t.mutable_floats());
  }
  return s;
}

TensorMap Aggregate(const protocols::AggregationOptions& o, const std::vector<Update>& plain,
              const std::vector<SecureSum>& sums, RoundContext ctx = {}) {
  auto agg = MakeAggregator(o, Global(), ctx);
  EXPECT_TRUE(agg.ok()) << agg.status();
  for (const Update& u : plain) EXPECT_TRUE((*agg)->Accept(u).ok()) << u.client_id;
  for (const SecureSum& s : sums) EXPECT_TRUE((*agg)->AcceptSecureSum(s).ok());
  auto next = (*agg)->Finish();
  EXPECT_TRUE(next.ok()) << next.status();
  EXPECT_EQ((*agg)->stats().accepted, static_cast<int>(plain.size() + [&] {
              size_t n = 0;
              for (const SecureSum& s : sums) n += s.contributors.size();
              return n;
            }()));
  return next.ok() ? *next : TensorMap();
}

void ExpectNear(const TensorMap& a, const TensorMap& b, double tol) {
  ASSERT_EQ(a.names(), b.names());
  for (const auto& [name, t] : a) {
    std::vector<float> x = t.ToFloat32(), y = b.at(name).ToFloat32();
    for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], y[i], tol) << name << "[" << i << "]";
  }
}

std::vector<Update> MixedDense() {
  std::mt19937 rng(11);
  return {Lora("a", 30, 2, rng), Lora("b", 50, 4, rng), Head("c", 20, rng), Lora("d", 40, 3, rng)};
}

TEST(SecureSumTest, MatchesPlaintextMeanOverMixedCoverage) {
  const std::vector<Update> updates = MixedDense();
  protocols::AggregationOptions o;
  const TensorMap plain = Aggregate(o, updates, {});
  const TensorMap secure = Aggregate(o, {}, {PlainSum(updates, /*unit=*/40)});
  ExpectNear(plain, secure, 1e-6);
  // The move differs from the global state where covered, not elsewhere.
  EXPECT_NE(plain.at("lora_A").floats()[0], Global().at("lora_A").floats()[0]);
  EXPECT_EQ(plain.at("frozen").floats()[1], Global().at("frozen").floats()[1]);
}

TEST(SecureSumTest, FixedPointSumMatchesWithinResolution) {
  const std::vector<Update> updates = MixedDense();
  auto codec = secagg::FixedPointCodec::Create(/*clip=*/2.0, /*fraction_bits=*/16, /*max_clients=*/4);
  ASSERT_TRUE(codec.ok());
  protocols::AggregationOptions o;
  const TensorMap plain = Aggregate(o, updates, {});
  const TensorMap secure = Aggregate(o, {}, {FixedPointSum(updates, 40, *codec)});
  // Per coordinate: 4 rounding errors of 2^-17 in units of 1/40 of a weight,
  // divided by a covering weight of at least 20.
  const double tol = 4 * std::ldexp(1.0, -17) * 40 / 20 + 1e-6;
  ExpectNear(plain, secure, tol);
}

TEST(SecureSumTest, CombinesWithPlainUpdatesAndSeedScalarSums) {
  std::mt19937 rng(3);
  std::vector<Update> dense = MixedDense();
  const std::vector<Update> seeds = {Seeds("z1", 10, 5, rng), Seeds("z2", 25, 5, rng)};
  TestReplay replay;
  RoundContext ctx{.seed_pool = {101, 202, 303, 404, 505}, .seed_replay = &replay};
  protocols::AggregationOptions o;
  o.algorithm = "fedadam";
  auto opt_a = MakeServerOptimizer(o);
  auto opt_b = MakeServerOptimizer(o);
  ASSERT_TRUE(opt_a.ok() && opt_b.ok());

  std::vector<Update> all = dense;
  all.insert(all.end(), seeds.begin(), seeds.end());
  RoundContext ca = ctx, cb = ctx;
  ca.optimizer = opt_a->get();
  cb.optimizer = opt_b->get();
  const TensorMap plain = Aggregate(o, all, {}, ca);
  // Two dense clients in the clear, two in a secure sum, the seed scalars
  // in a secure sum of their own.
  const TensorMap mixed = Aggregate(o, {dense[0], dense[2]}, {PlainSum({dense[1], dense[3]}, 7), PlainSum(seeds, 5)}, cb);
  ExpectNear(plain, mixed, 2e-6);
}

TEST(SecureSumTest, CentralDpWeighsContributorsEqually) {
  const std::vector<Update> updates = MixedDense();
  protocols::DpOptions dp{.enabled = true, .mode = "central", .clip_norm = 100.0, .noise_multiplier = 0.5};
  RoundContext ctx{.dp = &dp, .noise_seed = 99};
  protocols::AggregationOptions o;
  const TensorMap plain = Aggregate(o, updates, {}, ctx);
  const TensorMap secure = Aggregate(o, {}, {PlainSum(updates, 1, /*dp=*/true)}, ctx);
  ExpectNear(plain, secure, 1e-5);

  auto agg = MakeAggregator(o, Global(), ctx);
  ASSERT_TRUE(agg.ok());
  absl::Status s = (*agg)->AcceptSecureSum(PlainSum(updates, 40));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(std::string(s.message()).find("weight_unit"), std::string::npos) << s;
}

TEST(SecureSumTest, RefusesMalformedSumsAndKeepsTheRound) {
  std::vector<Update> updates = MixedDense();
  protocols::AggregationOptions o;
  auto agg = MakeAggregator(o, Global(), {});
  ASSERT_TRUE(agg.ok());
  ASSERT_TRUE((*agg)->Accept(updates[0]).ok());

  SecureSum dup = PlainSum({updates[0], updates[1]}, 10);  // "a" already accepted
  EXPECT_EQ((*agg)->AcceptSecureSum(dup).code(), absl::StatusCode::kInvalidArgument);
  SecureSum empty;
  EXPECT_EQ((*agg)->AcceptSecureSum(empty).code(), absl::StatusCode::kInvalidArgument);
  SecureSum nan = PlainSum({updates[1]}, 10);
  nan.delta.FindMutable("lora_B")->mutable_floats()[3] = std::nanf("");
  absl::Status s = (*agg)->AcceptSecureSum(nan);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("lora_B"), std::string::npos) << s;
  SecureSum missing = PlainSum({updates[1]}, 10);
  missing.delta = TensorMap();
  EXPECT_EQ((*agg)->AcceptSecureSum(missing).code(), absl::StatusCode::kInvalidArgument);
  SecureSum outside = PlainSum({updates[1]}, 10);
  outside.contributors[0].coverage.tensors.push_back({"nonexistent", -1, 0});
  EXPECT_EQ((*agg)->AcceptSecureSum(outside).code(), absl::StatusCode::kInvalidArgument);
  SecureSum seeds_without_pool;
  seeds_without_pool.kind = UpdateKind::kSeedScalars;
  seeds_without_pool.seed_scalars = {1, 2};
  seeds_without_pool.contributors.push_back({"z", 3, {}});
  EXPECT_EQ((*agg)->AcceptSecureSum(seeds_without_pool).code(), absl::StatusCode::kInvalidArgument);

  // The round goes on: the good sum of the other clients is taken.
  EXPECT_TRUE((*agg)->AcceptSecureSum(PlainSum({updates[1], updates[2], updates[3]}, 10)).ok());
  EXPECT_EQ((*agg)->stats().accepted, 4);
  EXPECT_GE((*agg)->stats().dropped, 6);
  auto next = (*agg)->Finish();
  ASSERT_TRUE(next.ok()) << next.status();
  ExpectNear(*next, Aggregate(o, updates, {}), 1e-6);
  EXPECT_EQ((*agg)->AcceptSecureSum(PlainSum({updates[1]}, 10)).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(SecureSumTest, RobustRulesRefuseSecureSums) {
  protocols::AggregationOptions o;
  o.robust = "median";
  auto agg = MakeAggregator(o, Global(), {});
  ASSERT_TRUE(agg.ok());
  absl::Status s = (*agg)->AcceptSecureSum(PlainSum(MixedDense(), 10));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
}

}  // namespace
}  // namespace fedfm::aggregation
