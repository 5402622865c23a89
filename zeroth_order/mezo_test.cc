#include "zeroth_order/mezo.h"

#include <sys/resource.h>
#include <torch/torch.h>

#include <cmath>
#include <iostream>
#include <vector>

#include "gtest/gtest.h"
#include "zeroth_order/noise.h"
#include "zeroth_order/noise_torch.h"
#include "zeroth_order/philox.h"

namespace fedfm::zeroth_order {
namespace {

// A tiny 2-layer MLP regression, built from explicit tensors (no global RNG):
// y_hat = tanh(x W1 + b1) W2 + b2, loss = mean((y_hat - y)^2).
// D = 8 inputs, H = 16 hidden, O = 1 output: 161 trainable values.
struct Mlp {
  torch::Tensor w1, b1, w2, b2, x, y;

  static torch::Tensor Det(uint64_t seed, std::vector<int64_t> shape, float scale) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    FillNoise({seed, 0, NoiseKind::kGaussian}, 0, v);
    return torch::from_blob(v.data(), shape, torch::kFloat32).clone().mul_(scale);
  }
  static Mlp Make(torch::ScalarType dtype = torch::kFloat32) {
    Mlp m;
    m.w1 = Det(1, {8, 16}, 0.4f).to(dtype);
    m.b1 = Det(2, {16}, 0.1f).to(dtype);
    m.w2 = Det(3, {16, 1}, 0.4f).to(dtype);
    m.b2 = Det(4, {1}, 0.1f).to(dtype);
    m.x = Det(5, {128, 8}, 1.0f).to(dtype);
    m.y = torch::sin(m.x.to(torch::kFloat32).sum(1, true)).to(dtype);
    return m;
  }
  std::vector<torch::Tensor> params() const { return {w1, b1, w2, b2}; }
  torch::Tensor Loss() const {
    torch::Tensor h = torch::tanh(torch::matmul(x, w1) + b1);
    return (torch::matmul(h, w2) + b2 - y).pow(2).mean();
  }
  double LossValue() const { return Loss().item<double>(); }
  // Autograd gradient, flattened (float64).
  torch::Tensor Gradient() const {
    std::vector<torch::Tensor> ps;
    for (const torch::Tensor& p : params()) ps.push_back(p.detach().clone().set_requires_grad(true));
    torch::Tensor h = torch::tanh(torch::matmul(x, ps[0]) + ps[1]);
    torch::Tensor loss = (torch::matmul(h, ps[2]) + ps[3] - y).pow(2).mean();
    loss.backward();
    std::vector<torch::Tensor> flat;
    for (const torch::Tensor& p : ps) flat.push_back(p.grad().reshape(-1).to(torch::kFloat64));
    return torch::cat(flat);
  }
  torch::Tensor Flat() const {
    std::vector<torch::Tensor> flat;
    for (const torch::Tensor& p : params()) flat.push_back(p.reshape(-1).to(torch::kFloat64));
    return torch::cat(flat);
  }
};

double Cosine(const torch::Tensor& a, const torch::Tensor& b) {
  return (a * b).sum().item<double>() / (a.norm().item<double>() * b.norm().item<double>());
}

// (1/P) sum_p g_p z_p from a step's result, regenerating z_p.
torch::Tensor Estimate(const ZoStepResult& r, const std::vector<torch::Tensor>& params,
                       NoiseKind kind) {
  std::vector<torch::Tensor> flat;
  for (size_t i = 0; i < params.size(); ++i) {
    torch::Tensor acc = torch::zeros({params[i].numel()}, torch::kFloat64);
    for (const Perturbation& p : r.perturbations) {
      absl::StatusOr<torch::Tensor> z =
          NoiseTensor({p.seed, static_cast<uint32_t>(i), kind}, {params[i].numel()}, torch::kCPU);
      EXPECT_TRUE(z.ok());
      acc += p.projected_gradient * z->to(torch::kFloat64);
    }
    flat.push_back(acc / static_cast<double>(r.perturbations.size()));
  }
  return torch::cat(flat);
}

TEST(MezoTest, AveragedEstimateAlignsWithAutogradGradient) {
  for (const char* noise : {"gaussian", "rademacher"}) {
    Mlp m = Mlp::Make();
    const torch::Tensor grad = m.Gradient();
    const torch::Tensor before = m.Flat();
    protocols::ZerothOrderOptions o;
    o.epsilon = 1e-3;
    o.learning_rate = 1e-3;
    o.perturbations = 256;
    o.noise = noise;
    absl::StatusOr<ZoStepResult> r =
        MezoStep(m.params(), [&] { return m.LossValue(); }, /*step_seed=*/31, o);
    ASSERT_TRUE(r.ok()) << r.status();
    const NoiseKind kind = *ParseNoiseKind(noise);
    const double cos_estimate = Cosine(Estimate(*r, m.params(), kind), grad);
    // The step moved theta along -eta * estimate.
    const double cos_step = Cosine(before - m.Flat(), grad);
    std::cout << noise << ": cosine(ZO estimate, autograd) = " << cos_estimate
              << ", cosine(-step, autograd) = " << cos_step << " (P = 256, d = 161)\n";
    // Theory for P samples in d dimensions: ~ 1/sqrt(1 + (d + 1)/P) = 0.78.
    EXPECT_GT(cos_estimate, 0.6);
    EXPECT_GT(cos_step, 0.6);
  }
}

TEST(MezoTest, ForwardGradientIsExactDirectionalDerivative) {
  Mlp m = Mlp::Make();
  const torch::Tensor grad = m.Gradient();
  const torch::Tensor before = m.Flat();
  protocols::ZerothOrderOptions o;
  o.learning_rate = 1e-3;
  o.perturbations = 64;
  o.estimator = "forward";
  absl::StatusOr<ZoStepResult> r = ForwardGradientStep(m.params(), [&] { return m.Loss(); }, 8, o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->perturbations.size(), 64u);
  for (const Perturbation& p : r->perturbations) {
    ZoStepResult one;
    one.perturbations = {p};
    one.perturbations[0].projected_gradient = 1.0;
    const torch::Tensor z = Estimate(one, m.params(), NoiseKind::kGaussian);
    const double want = (grad * z).sum().item<double>();
    EXPECT_NEAR(p.projected_gradient, want, 1e-4 * std::fabs(want) + 1e-5);
  }
  EXPECT_GT(Cosine(before - m.Flat(), grad), 0.5);
  // No tangent stays attached after the step.
  for (const torch::Tensor& p : m.params()) EXPECT_FALSE(p._fw_grad(0).defined());
}

TEST(MezoTest, SpsaAgreesWithForwardGradientOnTheSameSeeds) {
  Mlp a = Mlp::Make(), b = Mlp::Make();
  protocols::ZerothOrderOptions o;
  o.epsilon = 1e-3;
  o.perturbations = 8;
  absl::StatusOr<ZoStepResult> spsa = MezoStep(a.params(), [&] { return a.LossValue(); }, 77, o);
  o.estimator = "forward";
  absl::StatusOr<ZoStepResult> fwd = ForwardGradientStep(b.params(), [&] { return b.Loss(); }, 77, o);
  ASSERT_TRUE(spsa.ok() && fwd.ok());
  for (int p = 0; p < 8; ++p) {
    EXPECT_EQ(spsa->perturbations[p].seed, fwd->perturbations[p].seed);
    // Central differences at eps = 1e-3 on a float32 loss: ~1e-2 absolute.
    EXPECT_NEAR(spsa->perturbations[p].projected_gradient, fwd->perturbations[p].projected_gradient,
                0.02 + 0.02 * std::fabs(fwd->perturbations[p].projected_gradient));
  }
}

TEST(MezoTest, TrainingLowersTheLoss) {
  Mlp m = Mlp::Make();
  const double start = m.LossValue();
  protocols::ZerothOrderOptions o;
  o.epsilon = 1e-3;
  o.learning_rate = 2e-2;
  o.perturbations = 4;
  for (int step = 0; step < 150; ++step) {
    ASSERT_TRUE(MezoStep(m.params(), [&] { return m.LossValue(); },
                         DeriveSeed(3, step, 0, kPurposeStep), o)
                    .ok());
  }
  const double end = m.LossValue();
  std::cout << "MeZO 150 steps: loss " << start << " -> " << end << "\n";
  EXPECT_LT(end, 0.7 * start);
}

// u(3|theta| + 2 eps|z|)(1 + 4u): docs/zeroth_order_noise.md.
void ExpectRestored(const Mlp& before, const Mlp& after, uint64_t seed, float eps, double u) {
  const std::vector<torch::Tensor> p0 = before.params(), p1 = after.params();
  for (size_t i = 0; i < p0.size(); ++i) {
    absl::StatusOr<torch::Tensor> z =
        NoiseTensor({seed, static_cast<uint32_t>(i), NoiseKind::kGaussian}, p0[i].sizes(), torch::kCPU);
    ASSERT_TRUE(z.ok());
    const torch::Tensor t0 = p0[i].to(torch::kFloat64), t1 = p1[i].to(torch::kFloat64);
    const torch::Tensor bound = u * (3 * t0.abs() + 2 * eps * z->to(torch::kFloat64).abs()) * (1 + 4 * u);
    EXPECT_TRUE(((t1 - t0).abs() <= bound).all().item<bool>()) << "tensor " << i;
  }
}

TEST(MezoTest, ConstantLossRestoresFloatAndBf16ParametersWithinTheDriftBound) {
  for (torch::ScalarType dtype : {torch::kFloat32, torch::kBFloat16}) {
    Mlp m = Mlp::Make(dtype);
    Mlp before = m;
    for (torch::Tensor* t : {&before.w1, &before.b1, &before.w2, &before.b2}) *t = t->clone();
    protocols::ZerothOrderOptions o;
    o.epsilon = 1e-2;
    absl::StatusOr<ZoStepResult> r = MezoStep(m.params(), [] { return 0.25; }, 12, o);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->perturbations[0].projected_gradient, 0.0);
    const double u = dtype == torch::kFloat32 ? 0x1p-24 : 0x1p-8 + 0x1p-24;
    ExpectRestored(before, m, r->perturbations[0].seed, 1e-2f, u);
  }
}

TEST(MezoTest, LossExceptionIsReturnedAfterRestoring) {
  Mlp m = Mlp::Make();
  const torch::Tensor before = m.Flat();
  protocols::ZerothOrderOptions o;
  o.epsilon = 0.1;
  int calls = 0;
  absl::StatusOr<ZoStepResult> r = MezoStep(
      m.params(),
      [&]() -> double {
        if (++calls == 2) TORCH_CHECK(false, "shape mismatch in forward");
        return 1.0;
      },
      4, o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(r.status().message().find("shape mismatch"), std::string::npos) << r.status();
  EXPECT_LT((m.Flat() - before).abs().max().item<double>(), 1e-6);
}

TEST(MezoTest, SeedPoolStepReportsSlots) {
  Mlp m = Mlp::Make();
  const SeedPool pool = SeedPool::ForRound(1, 0, 4);
  protocols::ZerothOrderOptions o;
  o.perturbations = 3;
  absl::StatusOr<ZoStepResult> r = MezoStep(m.params(), [&] { return m.LossValue(); }, 6, o, &pool);
  ASSERT_TRUE(r.ok()) << r.status();
  SeedScalarAccumulator acc(pool.size());
  AccumulateSeedScalars(*r, acc);
  double total = 0, want = 0;
  for (double s : acc.sums()) total += s;
  for (const Perturbation& p : r->perturbations) {
    EXPECT_EQ(p.seed, pool.seed(p.pool_slot));
    want += p.projected_gradient / 3;
  }
  EXPECT_NEAR(total, want, 1e-12);
}

int64_t PeakRssBytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux: KiB
}

// Inference memory + O(1): a step over 64 MiB of parameters must not raise
// the process's peak memory by anything of that size (a clone of theta or a
// stored z would add 64 MiB).
TEST(MezoTest, StepAllocatesNothingOfParameterSize) {
  constexpr int64_t kElements = int64_t{16} << 20;
  torch::Tensor big = torch::full({kElements}, 0.5f);
  torch::Tensor small = torch::ones({16});
  big.add_(1.0f);  // touch every page
  const int64_t before = PeakRssBytes();
  protocols::ZerothOrderOptions o;
  o.noise = "rademacher";
  o.learning_rate = 1e-3;
  absl::StatusOr<ZoStepResult> r = MezoStep(
      {big, small}, [&] { return small.sum().item<double>(); }, 5, o);
  ASSERT_TRUE(r.ok()) << r.status();
  const int64_t grown = PeakRssBytes() - before;
  std::cout << "peak RSS growth during a step over 64 MiB of parameters: " << grown << " bytes\n";
  EXPECT_LT(grown, 8 << 20);
}

TEST(MezoTest, RejectsUntrainableParameters) {
  protocols::ZerothOrderOptions o;
  std::vector<torch::Tensor> params = {torch::ones({3}), torch::ones({2}, torch::kInt64)};
  absl::StatusOr<ZoStepResult> r = MezoStep(params, [] { return 0.0; }, 1, o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("tensor 1"), std::string::npos) << r.status();
}

}  // namespace
}  // namespace fedfm::zeroth_order
