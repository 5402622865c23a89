#include "zeroth_order/zo_step.h"

#include <cmath>
#include <cstdint>
#include <iostream>
#include <stdexcept>
#include <vector>

#include "gtest/gtest.h"
#include "protocols/tensor.h"
#include "zeroth_order/internal/noise_math.h"
#include "zeroth_order/noise.h"
#include "zeroth_order/philox.h"

namespace fedfm::zeroth_order {
namespace {

using protocols::DType;
using protocols::Tensor;
using protocols::TensorMap;

constexpr double kU32 = 0x1p-24;  // unit roundoff of binary32
constexpr double kU16 = 0x1p-8;   // unit roundoff of bfloat16

// Deterministic "random" values: z of an unrelated stream, scaled.
std::vector<float> Values(uint64_t seed, size_t n, float scale) {
  std::vector<float> v(n);
  FillNoise({seed, 0, NoiseKind::kGaussian}, 0, v);
  for (float& x : v) x *= scale;
  return v;
}

TensorMap TwoTensorState(DType dtype) {
  TensorMap m;
  EXPECT_TRUE(m.Insert("a", Tensor::FromFloats({64, 32}, Values(1, 64 * 32, 0.05f)).To(dtype)).ok());
  EXPECT_TRUE(m.Insert("b", Tensor::FromFloats({1000}, Values(2, 1000, 3.0f)).To(dtype)).ok());
  return m;
}

// The drift bound of docs/zeroth_order_noise.md for theta + eps z - 2 eps z + eps z:
// |theta' - theta| <= u * (3|theta| + 2 eps|z|) * (1 + 4u), u the unit roundoff
// (bf16: u_bf16 + u_f32, the float sum being rounded twice).
double DriftBound(double theta, double eps_z, double u) {
  return u * (3 * std::fabs(theta) + 2 * std::fabs(eps_z)) * (1 + 4 * u);
}

struct DriftStats {
  double max_ratio = 0;     // max |drift| / bound
  double max_ulps = 0;      // max |drift| / ulp(max(|theta|, eps|z|))
  double nonzero_fraction = 0;
};

DriftStats CheckRestored(const TensorMap& before, const TensorMap& after, uint64_t seed,
                         NoiseKind kind, float eps, double u) {
  DriftStats stats;
  size_t nonzero = 0, total = 0;
  uint32_t index = 0;
  for (const auto& [name, t0] : before) {
    const std::vector<float> x0 = t0.ToFloat32();
    const std::vector<float> x1 = after.at(name).ToFloat32();
    std::vector<float> z(x0.size());
    FillNoise({seed, index++, kind}, 0, z);
    for (size_t i = 0; i < x0.size(); ++i) {
      const double drift = std::fabs(static_cast<double>(x1[i]) - x0[i]);
      const double bound = DriftBound(x0[i], static_cast<double>(eps) * z[i], u);
      EXPECT_LE(drift, bound) << name << "[" << i << "] theta " << x0[i] << " eps*z " << eps * z[i];
      stats.max_ratio = std::max(stats.max_ratio, drift / bound);
      const double scale = std::max(std::fabs(static_cast<double>(x0[i])), std::fabs(static_cast<double>(eps) * z[i]));
      const double ulp = std::ldexp(u * 2, std::ilogb(static_cast<float>(std::max(scale, 1e-30))));
      stats.max_ulps = std::max(stats.max_ulps, drift / ulp);
      nonzero += drift != 0;
      ++total;
    }
  }
  stats.nonzero_fraction = static_cast<double>(nonzero) / total;
  return stats;
}

TEST(ZerothOrderDriftTest, Float32RestoredWithinBound) {
  for (float eps : {1e-3f, 1e-2f, 1.0f}) {
    TensorMap state = TwoTensorState(DType::kF32);
    const TensorMap before = state;
    TensorMapParameters params(&state);
    ASSERT_TRUE(params.AddScaledNoise(9, NoiseKind::kGaussian, eps).ok());
    ASSERT_TRUE(params.AddScaledNoise(9, NoiseKind::kGaussian, -2 * eps).ok());
    ASSERT_TRUE(params.AddScaledNoise(9, NoiseKind::kGaussian, eps).ok());
    const DriftStats s = CheckRestored(before, state, 9, NoiseKind::kGaussian, eps, kU32);
    std::cout << "f32 eps " << eps << ": max drift/bound " << s.max_ratio << ", max ulps "
              << s.max_ulps << ", nonzero " << s.nonzero_fraction << "\n";
    EXPECT_GT(s.nonzero_fraction, 0.0) << "the drift is real: theta + eps z - 2 eps z + eps z != theta";
  }
}

TEST(ZerothOrderDriftTest, Bf16RestoredWithinBound) {
  for (float eps : {1e-3f, 1e-2f}) {
    TensorMap state = TwoTensorState(DType::kBF16);
    const TensorMap before = state;
    TensorMapParameters params(&state);
    ASSERT_TRUE(params.AddScaledNoise(9, NoiseKind::kRademacher, eps).ok());
    ASSERT_TRUE(params.AddScaledNoise(9, NoiseKind::kRademacher, -2 * eps).ok());
    ASSERT_TRUE(params.AddScaledNoise(9, NoiseKind::kRademacher, eps).ok());
    const DriftStats s =
        CheckRestored(before, state, 9, NoiseKind::kRademacher, eps, kU16 + kU32);
    std::cout << "bf16 eps " << eps << ": max drift/bound " << s.max_ratio << ", max ulps "
              << s.max_ulps << ", nonzero " << s.nonzero_fraction << "\n";
    EXPECT_GT(s.nonzero_fraction, 0.0);
  }
}

// Drift is a random walk over cycles; in float32 it stays negligible
// (docs/zeroth_order_noise.md: ~6e-8 * sqrt(cycles) of rms theta).
TEST(ZerothOrderDriftTest, Float32DriftStaysSmallOverManyCycles) {
  TensorMap state;
  ASSERT_TRUE(state.Insert("w", Tensor::FromFloats({10000}, Values(5, 10000, 0.02f))).ok());
  const std::vector<float> x0 = state.at("w").ToFloat32();
  TensorMapParameters params(&state);
  for (uint64_t cycle = 0; cycle < 100; ++cycle) {
    for (float a : {1e-3f, -2e-3f, 1e-3f}) {
      ASSERT_TRUE(params.AddScaledNoise(1000 + cycle, NoiseKind::kGaussian, a).ok());
    }
  }
  const std::vector<float> x1 = state.at("w").ToFloat32();
  double drift2 = 0, theta2 = 0;
  for (size_t i = 0; i < x0.size(); ++i) {
    drift2 += (static_cast<double>(x1[i]) - x0[i]) * (static_cast<double>(x1[i]) - x0[i]);
    theta2 += static_cast<double>(x0[i]) * x0[i];
  }
  const double rel = std::sqrt(drift2 / theta2);
  std::cout << "f32 rms drift / rms theta after 100 cycles: " << rel << "\n";
  EXPECT_LT(rel, 2e-6);  // measured 6e-7
  EXPECT_GT(rel, 0.0);
}

TEST(ZerothOrderStepTest, ZeroGradientStepLeavesOnlyDrift) {
  TensorMap state = TwoTensorState(DType::kF32);
  const TensorMap before = state;
  TensorMapParameters params(&state);
  protocols::ZerothOrderOptions o;
  o.epsilon = 1e-2;
  int calls = 0;
  absl::StatusOr<ZoStepResult> r = SpsaStep(
      params, [&] { ++calls; return 1.5; }, /*step_seed=*/77, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(calls, 2);
  ASSERT_EQ(r->perturbations.size(), 1u);
  EXPECT_EQ(r->perturbations[0].projected_gradient, 0.0);
  EXPECT_EQ(r->perturbations[0].seed, DeriveSeed(77, 0, 0, kPurposePerturbation));
  CheckRestored(before, state, r->perturbations[0].seed, NoiseKind::kGaussian, 0.01f, kU32);
}

// f(theta) = 1/2 sum_i a_i theta_i^2 over one tensor. Central differences are
// exact for a quadratic, so g must equal grad . z up to float perturbation
// rounding.
struct Quadratic {
  std::vector<double> a;
  const TensorMap* state;
  double operator()() const {
    const std::vector<float> x = state->at("w").ToFloat32();
    double f = 0;
    for (size_t i = 0; i < x.size(); ++i) f += 0.5 * a[i] * x[i] * x[i];
    return f;
  }
};

TEST(ZerothOrderStepTest, ProjectedGradientIsDirectionalDerivativeAndUpdateFollowsSpec) {
  constexpr size_t kDim = 200;
  TensorMap state;
  ASSERT_TRUE(state.Insert("w", Tensor::FromFloats({kDim}, Values(3, kDim, 1.0f))).ok());
  Quadratic f{std::vector<double>(kDim), &state};
  for (size_t i = 0; i < kDim; ++i) f.a[i] = 0.5 + (i % 7) * 0.25;
  const std::vector<float> theta0 = state.at("w").ToFloat32();

  protocols::ZerothOrderOptions o;
  o.epsilon = 1e-3;
  o.learning_rate = 1e-2;
  o.perturbations = 3;
  o.weight_decay = 0.1;
  TensorMapParameters params(&state);
  absl::StatusOr<ZoStepResult> r = SpsaStep(params, f, /*step_seed=*/5, o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->perturbations.size(), 3u);

  // Reference: theta0 restored exactly enough for the directional derivative.
  std::vector<float> expect = theta0;
  for (float& v : expect) v = v * static_cast<float>(1.0 - 1e-2 * 0.1);
  for (int p = 0; p < 3; ++p) {
    const Perturbation& pp = r->perturbations[p];
    EXPECT_EQ(pp.seed, DeriveSeed(5, p, 0, kPurposePerturbation));
    std::vector<float> z(kDim);
    FillNoise({pp.seed, 0, NoiseKind::kGaussian}, 0, z);
    double dd = 0;
    for (size_t i = 0; i < kDim; ++i) dd += f.a[i] * theta0[i] * z[i];
    EXPECT_NEAR(pp.projected_gradient, dd, 2e-3 * std::fabs(dd) + 1e-3) << "perturbation " << p;
    const float alpha = static_cast<float>(-1e-2 * pp.projected_gradient / 3);
    AddScaledNoise({pp.seed, 0, NoiseKind::kGaussian}, 0, alpha, expect);
  }
  // theta after the step differs from the reference only by the (bounded)
  // perturbation drift, propagated through the decay.
  const std::vector<float> got = state.at("w").ToFloat32();
  for (size_t i = 0; i < kDim; ++i) {
    EXPECT_NEAR(got[i], expect[i], 3 * DriftBound(theta0[i], 1e-3 * 5.77, kU32) * 3) << i;
  }
}

TEST(ZerothOrderStepTest, SpsaDescendsAQuadratic) {
  constexpr size_t kDim = 50;
  for (const char* noise : {"gaussian", "rademacher"}) {
    TensorMap state;
    ASSERT_TRUE(state.Insert("w", Tensor::FromFloats({kDim}, Values(4, kDim, 1.0f))).ok());
    Quadratic f{std::vector<double>(kDim, 1.0), &state};
    const double start = f();
    protocols::ZerothOrderOptions o;
    o.epsilon = 1e-3;
    o.learning_rate = 0.02;
    o.perturbations = 4;
    o.noise = noise;
    TensorMapParameters params(&state);
    for (int step = 0; step < 300; ++step) {
      ASSERT_TRUE(SpsaStep(params, f, DeriveSeed(11, step, 0, kPurposeStep), o).ok());
    }
    EXPECT_LT(f(), 0.1 * start) << noise << ": " << start << " -> " << f();
  }
}

TEST(ZerothOrderStepTest, NonFiniteLossRestoresAndFails) {
  TensorMap state = TwoTensorState(DType::kF32);
  const TensorMap before = state;
  TensorMapParameters params(&state);
  protocols::ZerothOrderOptions o;
  int calls = 0;
  absl::StatusOr<ZoStepResult> r =
      SpsaStep(params, [&] { return ++calls == 1 ? NAN : 1.0; }, 3, o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  CheckRestored(before, state, DeriveSeed(3, 0, 0, kPurposePerturbation), NoiseKind::kGaussian,
                1e-3f, kU32);
}

TEST(ZerothOrderStepTest, ThrowingLossRestoresAndPropagates) {
  TensorMap state = TwoTensorState(DType::kF32);
  const TensorMap before = state;
  TensorMapParameters params(&state);
  protocols::ZerothOrderOptions o;
  o.epsilon = 0.5;
  int calls = 0;
  auto loss = [&]() -> double {
    if (++calls == 2) throw std::runtime_error("forward failed");
    return 1.0;
  };
  EXPECT_THROW((void)SpsaStep(params, loss, 3, o), std::runtime_error);
  // The throw happened at theta - eps z; the guard added +eps z back.
  CheckRestored(before, state, DeriveSeed(3, 0, 0, kPurposePerturbation), NoiseKind::kGaussian,
                0.5f, kU32);
}

TEST(ZerothOrderStepTest, RejectsBadOptions) {
  protocols::ZerothOrderOptions o;
  o.noise = "uniform";
  EXPECT_EQ(ParseZoOptions(o, false).status().code(), absl::StatusCode::kInvalidArgument);
  o = {};
  o.weight_decay = 0.01;
  EXPECT_TRUE(ParseZoOptions(o, false).ok());
  absl::Status with_pool = ParseZoOptions(o, true).status();
  EXPECT_EQ(with_pool.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(with_pool.message().find("zeroth_order.weight_decay"), std::string::npos);
  o = {};
  o.epsilon = 0;
  EXPECT_FALSE(ParseZoOptions(o, false).ok());
  o = {};
  o.epsilon = 1e-50;  // underflows float
  EXPECT_FALSE(ParseZoOptions(o, false).ok());
  o = {};
  o.estimator = "forward";
  TensorMap state = TwoTensorState(DType::kF32);
  TensorMapParameters params(&state);
  EXPECT_EQ(SpsaStep(params, [] { return 0.0; }, 1, o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ZerothOrderStepTest, PoolPerturbationsUsePickedSlots) {
  const SeedPool pool = SeedPool::ForRound(/*run_seed=*/8, /*round=*/2, /*size=*/16);
  const std::vector<Perturbation> ps = PerturbationSeeds(/*step_seed=*/99, 5, &pool);
  ASSERT_EQ(ps.size(), 5u);
  for (uint32_t p = 0; p < 5; ++p) {
    EXPECT_EQ(ps[p].pool_slot, pool.Pick(99, p));
    EXPECT_EQ(ps[p].seed, pool.seed(ps[p].pool_slot));
  }
}

}  // namespace
}  // namespace fedfm::zeroth_order
