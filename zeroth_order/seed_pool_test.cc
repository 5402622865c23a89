#include "zeroth_order/seed_pool.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "protocols/tensor.h"
#include "zeroth_order/noise.h"
#include "zeroth_order/philox.h"
#include "zeroth_order/zo_step.h"

namespace fedfm::zeroth_order {
namespace {

using protocols::DType;
using protocols::Tensor;
using protocols::TensorMap;
using protocols::Update;

constexpr double kU32 = 0x1p-24;
constexpr double kMaxAbsGaussian = 5.7681075;

std::vector<float> Values(uint64_t seed, size_t n, float scale) {
  std::vector<float> v(n);
  FillNoise({seed, 0, NoiseKind::kGaussian}, 0, v);
  for (float& x : v) x *= scale;
  return v;
}

TEST(SeedPoolTest, PoolIsAFunctionOfRunSeedRoundAndSize) {
  const SeedPool a = SeedPool::ForRound(123, 4, 32);
  ASSERT_EQ(a.size(), 32);
  EXPECT_EQ(a.seeds(), SeedPool::ForRound(123, 4, 32).seeds());
  EXPECT_EQ(a.seed(5), DeriveSeed(123, 4, 5, kPurposeSeedPool));
  // A larger pool of the same round extends the smaller one.
  const SeedPool b = SeedPool::ForRound(123, 4, 64);
  EXPECT_TRUE(std::equal(a.seeds().begin(), a.seeds().end(), b.seeds().begin()));
  EXPECT_NE(a.seeds(), SeedPool::ForRound(123, 5, 32).seeds());
  EXPECT_NE(a.seeds(), SeedPool::ForRound(124, 4, 32).seeds());
  EXPECT_EQ(std::set<uint64_t>(b.seeds().begin(), b.seeds().end()).size(), 64u);
}

TEST(SeedPoolTest, PickIsUniformOverSlots) {
  const SeedPool pool = SeedPool::ForRound(1, 1, 10);
  std::vector<int> counts(10, 0);
  constexpr int kDraws = 100000;
  for (int t = 0; t < kDraws; ++t) {
    const int k = pool.Pick(DeriveSeed(7, t, 0, kPurposeStep), static_cast<uint32_t>(t % 3));
    ASSERT_GE(k, 0);
    ASSERT_LT(k, 10);
    ++counts[k];
  }
  // Expected 10000 each, sd ~95: 6 sd.
  for (int c : counts) EXPECT_NEAR(c, kDraws / 10, 600);
  EXPECT_EQ(pool.Pick(42, 1), pool.Pick(42, 1));
}

Update SeedUpdate(const std::string& id, uint64_t n, std::vector<float> s) {
  Update u;
  u.client_id = id;
  u.num_examples = n;
  u.kind = protocols::UpdateKind::kSeedScalars;
  u.seed_scalars = std::move(s);
  return u;
}

TEST(SeedPoolTest, AverageWeighsByExamplesInClientIdOrder) {
  std::vector<Update> ups = {SeedUpdate("c", 1, {1, 2, 3}), SeedUpdate("a", 3, {0.5f, -1, 0}),
                             SeedUpdate("b", 4, {0.1f, 0.2f, 0.3f})};
  absl::StatusOr<std::vector<double>> m = AverageSeedScalars(ups, 3);
  ASSERT_TRUE(m.ok()) << m.status();
  for (int k = 0; k < 3; ++k) {
    const double want =
        (1.0 * ups[0].seed_scalars[k] + 3.0 * ups[1].seed_scalars[k] + 4.0 * ups[2].seed_scalars[k]) / 8;
    EXPECT_NEAR((*m)[k], want, 1e-12);
  }
  std::reverse(ups.begin(), ups.end());
  absl::StatusOr<std::vector<double>> again = AverageSeedScalars(ups, 3);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(0, std::memcmp(m->data(), again->data(), 3 * sizeof(double)))
      << "arrival order must not change a bit";
}

TEST(SeedPoolTest, AverageRejectsMalformedUpdates) {
  EXPECT_EQ(AverageSeedScalars({}, 3).status().code(), absl::StatusCode::kFailedPrecondition);
  std::vector<Update> wrong_len = {SeedUpdate("a", 1, {1, 2})};
  absl::Status st = AverageSeedScalars(wrong_len, 3).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("\"a\""), std::string::npos) << st;
  std::vector<Update> nan = {SeedUpdate("a", 1, {1, NAN, 2})};
  EXPECT_FALSE(AverageSeedScalars(nan, 3).ok());
  std::vector<Update> no_examples = {SeedUpdate("a", 0, {1, 1, 2})};
  EXPECT_FALSE(AverageSeedScalars(no_examples, 3).ok());
  std::vector<Update> dup = {SeedUpdate("a", 1, {1, 1, 2}), SeedUpdate("a", 1, {1, 1, 2})};
  EXPECT_FALSE(AverageSeedScalars(dup, 3).ok());
  Update dense = SeedUpdate("d", 1, {1, 1, 2});
  dense.kind = protocols::UpdateKind::kDense;
  EXPECT_FALSE(AverageSeedScalars(std::vector<Update>{dense}, 3).ok());
}

TensorMap SmallModel(DType dtype) {
  TensorMap m;
  EXPECT_TRUE(m.Insert("w", Tensor::FromFloats({16, 3}, Values(1, 48, 0.3f)).To(dtype)).ok());
  EXPECT_TRUE(m.Insert("b", Tensor::FromFloats({3}, Values(2, 3, 0.1f)).To(dtype)).ok());
  return m;
}

TEST(SeedPoolTest, DeltaIsTheSumOfRegeneratedNoise) {
  const TensorMap global = SmallModel(DType::kF32);
  const SeedPool pool = SeedPool::ForRound(5, 0, 4);
  const std::vector<double> coef = {0.5, 0.0, -2.0, 1.25};
  absl::StatusOr<TensorMap> delta =
      SeedPoolDelta(global, pool, coef, /*learning_rate=*/0.1, NoiseKind::kGaussian);
  ASSERT_TRUE(delta.ok()) << delta.status();
  ASSERT_EQ(delta->names(), global.names());
  uint32_t index = 0;
  for (const auto& [name, t] : *delta) {
    EXPECT_EQ(t.dtype(), DType::kF32);
    EXPECT_EQ(t.shape(), global.at(name).shape());
    const std::vector<float> d = t.ToFloat32();
    for (size_t e = 0; e < d.size(); ++e) {
      double want = 0;
      for (int k = 0; k < 4; ++k) want += -0.1 * coef[k] * NoiseAt({pool.seed(k), index, NoiseKind::kGaussian}, e);
      EXPECT_EQ(d[e], static_cast<float>(want)) << name << "[" << e << "]";
    }
    ++index;
  }
}

TEST(SeedPoolTest, ReplayDoesNotDependOnThreadsAndApplyAddsTheDelta) {
  TensorMap global;
  ASSERT_TRUE(global.Insert("big", Tensor::FromFloats({300000}, Values(3, 300000, 0.02f))).ok());
  ASSERT_TRUE(global.Insert("half", Tensor::FromFloats({1000}, Values(4, 1000, 1.0f)).To(DType::kBF16)).ok());
  const SeedPool pool = SeedPool::ForRound(6, 1, 3);
  const std::vector<double> coef = {1.0, -0.5, 0.25};
  absl::StatusOr<TensorMap> d1 = SeedPoolDelta(global, pool, coef, 0.01, NoiseKind::kRademacher, 1);
  absl::StatusOr<TensorMap> d4 = SeedPoolDelta(global, pool, coef, 0.01, NoiseKind::kRademacher, 4);
  ASSERT_TRUE(d1.ok() && d4.ok());
  EXPECT_TRUE(d1->at("big").Identical(d4->at("big")));
  EXPECT_TRUE(d1->at("half").Identical(d4->at("half")));

  TensorMap applied = global;
  ASSERT_TRUE(ApplySeedPoolUpdate(applied, pool, coef, 0.01, NoiseKind::kRademacher, 3).ok());
  const std::vector<float> g = global.at("big").ToFloat32(), d = d1->at("big").ToFloat32(),
                           a = applied.at("big").ToFloat32();
  for (size_t i = 0; i < g.size(); ++i) ASSERT_EQ(a[i], g[i] + d[i]) << i;
  const std::vector<float> gh = global.at("half").ToFloat32(), dh = d1->at("half").ToFloat32();
  ASSERT_EQ(applied.at("half").dtype(), DType::kBF16);
  const std::vector<float> ah = applied.at("half").ToFloat32();
  for (size_t i = 0; i < gh.size(); ++i) {
    ASSERT_EQ(ah[i], protocols::Bf16ToFloat(protocols::FloatToBf16(gh[i] + dh[i]))) << i;
  }
}

TEST(SeedPoolTest, ReplayRejectsWrongCoefficientCount) {
  TensorMap global = SmallModel(DType::kF32);
  const SeedPool pool = SeedPool::ForRound(5, 0, 4);
  const std::vector<double> three = {1, 2, 3};
  EXPECT_EQ(SeedPoolDelta(global, pool, three, 0.1, NoiseKind::kGaussian).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(ApplySeedPoolUpdate(global, pool, three, 0.1, NoiseKind::kGaussian).ok());
}

// A client on a TensorMap-backed linear regression, trained by SPSA with a
// shared pool: its dense change must equal the server's replay of its scalars.
struct Regression {
  std::vector<float> x;  // [n, 16]
  std::vector<float> y;  // [n, 3]
  const TensorMap* state;
  double operator()() const {
    const std::vector<float> w = state->at("w").ToFloat32(), b = state->at("b").ToFloat32();
    const size_t n = y.size() / 3;
    double loss = 0;
    for (size_t i = 0; i < n; ++i) {
      for (int o = 0; o < 3; ++o) {
        double p = b[o];
        for (int j = 0; j < 16; ++j) p += static_cast<double>(x[i * 16 + j]) * w[j * 3 + o];
        loss += (p - y[i * 3 + o]) * (p - y[i * 3 + o]);
      }
    }
    return loss / n;
  }
};

struct ClientRun {
  Update update;
  TensorMap dense_delta;  // theta_T - theta_0, in double then rounded to F32
  double loss_start = 0, loss_end = 0;
  double bound_scale = 0;  // max |theta| seen plus the largest perturbation
  double total_alpha = 0;  // sum of |alpha| over the applied updates
};

ClientRun RunClient(const TensorMap& global, const SeedPool& pool, uint64_t data_seed,
                    const std::string& id, int steps, const protocols::ZerothOrderOptions& o) {
  ClientRun run;
  TensorMap state = global;
  Regression f{Values(data_seed, 64 * 16, 1.0f), Values(data_seed + 1, 64 * 3, 1.0f), &state};
  run.loss_start = f();
  TensorMapParameters params(&state);
  SeedScalarAccumulator acc(pool.size());
  double max_abs = 0;
  for (int t = 0; t < steps; ++t) {
    absl::StatusOr<ZoStepResult> r = SpsaStep(params, f, DeriveSeed(data_seed, t, 0, kPurposeStep), o, &pool);
    EXPECT_TRUE(r.ok()) << r.status();
    AccumulateSeedScalars(*r, acc);
    for (const Perturbation& p : r->perturbations) {
      run.total_alpha += std::fabs(o.learning_rate * p.projected_gradient / o.perturbations);
    }
    for (const auto& [name, t] : state) {
      for (float v : t.ToFloat32()) max_abs = std::max(max_abs, static_cast<double>(std::fabs(v)));
    }
  }
  run.loss_end = f();
  run.update = acc.ToUpdate(id, /*num_examples=*/64 + data_seed % 7);
  for (const auto& [name, t] : state) {
    const std::vector<float> a = t.ToFloat32(), b = global.at(name).ToFloat32();
    std::vector<float> d(a.size());
    for (size_t i = 0; i < a.size(); ++i) d[i] = static_cast<float>(static_cast<double>(a[i]) - b[i]);
    EXPECT_TRUE(run.dense_delta.Insert(name, Tensor::FromFloats(t.shape(), d)).ok());
  }
  run.bound_scale = max_abs + 2 * o.epsilon * kMaxAbsGaussian;
  return run;
}

// Per element: each of the client's 4 * steps * P in-place float operations
// rounds by at most u * bound_scale (3 for perturb/restore, 1 for the step),
// the float32 wire format of s_k and the replay's own rounding add
// u * (|replayed delta| + lr * sum_k |s_k| * 5.77).
double ReplayTolerance(const ClientRun& run, int steps, int perturbations, double lr) {
  double wire = 0;
  for (float s : run.update.seed_scalars) wire += lr * std::fabs(s) * kMaxAbsGaussian;
  return kU32 * (4.0 * steps * perturbations * run.bound_scale + 2 * wire +
                 run.total_alpha * kMaxAbsGaussian) * 1.01;
}

TEST(SeedPoolTest, ReplayReproducesTheClientsDenseUpdate) {
  const TensorMap global = SmallModel(DType::kF32);
  const SeedPool pool = SeedPool::ForRound(/*run_seed=*/2024, /*round=*/3, /*size=*/16);
  protocols::ZerothOrderOptions o;
  o.epsilon = 1e-3;
  o.learning_rate = 5e-3;
  o.perturbations = 2;
  constexpr int kSteps = 40;
  const ClientRun run = RunClient(global, pool, 100, "client-a", kSteps, o);
  EXPECT_LT(run.loss_end, run.loss_start) << "the client should have learned something";

  const std::vector<double> coef(run.update.seed_scalars.begin(), run.update.seed_scalars.end());
  absl::StatusOr<TensorMap> replay = SeedPoolDelta(global, pool, coef, o.learning_rate, NoiseKind::kGaussian);
  ASSERT_TRUE(replay.ok()) << replay.status();
  const double tol = ReplayTolerance(run, kSteps, o.perturbations, o.learning_rate);
  double max_err = 0, max_delta = 0;
  for (const auto& [name, t] : run.dense_delta) {
    const std::vector<float> want = t.ToFloat32(), got = replay->at(name).ToFloat32();
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], tol) << name << "[" << i << "]";
      max_err = std::max(max_err, static_cast<double>(std::fabs(got[i] - want[i])));
      max_delta = std::max(max_delta, static_cast<double>(std::fabs(want[i])));
    }
  }
  std::cout << "single client: max |delta| " << max_delta << ", max |replay - dense| " << max_err
            << ", tolerance " << tol << "\n";
  EXPECT_GT(max_delta, 100 * tol) << "the test must compare a real update";
}

TEST(SeedPoolTest, ReplayOfAveragedScalarsIsFedAvgOfDenseUpdates) {
  const TensorMap global = SmallModel(DType::kF32);
  const SeedPool pool = SeedPool::ForRound(7, 0, 8);
  protocols::ZerothOrderOptions o;
  o.epsilon = 1e-3;
  o.learning_rate = 5e-3;
  o.perturbations = 1;
  constexpr int kSteps = 25;
  std::vector<ClientRun> runs;
  std::vector<Update> updates;
  for (uint64_t c = 0; c < 3; ++c) {
    runs.push_back(RunClient(global, pool, 200 + 10 * c, "client-" + std::to_string(c), kSteps, o));
    updates.push_back(runs.back().update);
  }
  absl::StatusOr<std::vector<double>> mean = AverageSeedScalars(updates, pool.size());
  ASSERT_TRUE(mean.ok()) << mean.status();
  TensorMap next = global;
  ASSERT_TRUE(ApplySeedPoolUpdate(next, pool, *mean, o.learning_rate, NoiseKind::kGaussian).ok());

  double total_n = 0, tol = 0;
  for (const ClientRun& r : runs) total_n += r.update.num_examples;
  for (const ClientRun& r : runs) {
    tol += r.update.num_examples / total_n * ReplayTolerance(r, kSteps, 1, o.learning_rate);
  }
  tol += kU32 * 2;  // the final fl(theta + delta) at |theta| < 1
  for (const auto& [name, t] : global) {
    const std::vector<float> g = t.ToFloat32(), got = next.at(name).ToFloat32();
    for (size_t i = 0; i < g.size(); ++i) {
      double fedavg = g[i];
      for (const ClientRun& r : runs) {
        fedavg += r.update.num_examples / total_n * r.dense_delta.at(name).ToFloat32()[i];
      }
      EXPECT_NEAR(got[i], fedavg, tol) << name << "[" << i << "]";
    }
  }
}

}  // namespace
}  // namespace fedfm::zeroth_order
