#include "aggregation/rdp_accountant.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace fedfm::aggregation {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Reference values below are TF-Privacy's published test expectations
// (tensorflow_privacy/privacy/analysis/rdp_accountant_test.py and
// compute_dp_sgd_privacy_test.py), themselves checked there against
// multi-precision numerical integration.

TEST(RdpAccountantTest, FullParticipationIsThePlainGaussianExactly) {
  // TF-Privacy test_compute_rdp_no_sampling: q = 1, σ = 10, α = 20 -> 0.1.
  EXPECT_EQ(SampledGaussianRdp(1.0, 10.0, 20), 0.1);
  for (double sigma : {0.5, 1.1, 3.0}) {
    for (double alpha : DefaultRdpOrders()) {
      EXPECT_EQ(SampledGaussianRdp(1.0, sigma, alpha), alpha / (2 * sigma * sigma));
    }
  }
  // The binomial expansion tends to α/(2σ²) as q -> 1.
  for (double alpha : {2.0, 5.0, 32.0}) {
    EXPECT_NEAR(SampledGaussianRdp(1.0 - 1e-12, 2.0, alpha), alpha / 8.0, 1e-9 * alpha) << alpha;
  }
}

TEST(RdpAccountantTest, DegenerateCases) {
  EXPECT_EQ(SampledGaussianRdp(0.0, 1.0, 8), 0.0);       // nobody sampled
  EXPECT_EQ(SampledGaussianRdp(0.1, 0.0, 8), kInf);      // no noise
  EXPECT_EQ(SampledGaussianRdp(0.1, 1.0, kInf), kInf);
}

TEST(RdpAccountantTest, MatchesTfPrivacyScalar) {
  // test_compute_rdp_scalar: compute_rdp(q=0.1, σ=2, steps=10, α=5) = 0.07737 (5 places).
  EXPECT_NEAR(10 * SampledGaussianRdp(0.1, 2.0, 5), 0.07737, 5e-6);
}

TEST(RdpAccountantTest, MatchesTfPrivacySequenceWithFractionalOrders) {
  // test_compute_rdp_sequence: q = 0.01, σ = 2.5, 50 steps, rtol 1e-4.
  const std::vector<double> orders = {1.5, 2.5, 5, 50, 100};
  const std::vector<double> expected = {6.5007e-04, 1.0854e-03, 2.1808e-03, 2.3846e-02, 1.6742e+02};
  for (size_t k = 0; k < orders.size(); ++k) {
    const double got = 50 * SampledGaussianRdp(0.01, 2.5, orders[k]);
    EXPECT_NEAR(got, expected[k], 1e-4 * expected[k]) << "order " << orders[k];
  }
}

TEST(RdpAccountantTest, ImprovedConversionMatchesTfPrivacy) {
  // test_get_privacy_spent_check_target_delta: constant RDP 1.1 at orders
  // 2..32, δ = 1e-5 -> ε = 1.32783806176 at order 32.
  std::vector<double> orders, rdp;
  for (int a = 2; a <= 32; ++a) {
    orders.push_back(a);
    rdp.push_back(1.1);
  }
  DpGuarantee g = RdpToDp(orders, rdp, 1e-5);
  EXPECT_NEAR(g.epsilon, 1.32783806176, 1e-9);
  EXPECT_EQ(g.order, 32);
  // Classic conversion at the same order: 1.1 + log(1e5) / 31.
  DpGuarantee c = RdpToDp(orders, rdp, 1e-5, RdpConversion::kClassic);
  EXPECT_NEAR(c.epsilon, 1.1 + std::log(1e5) / 31, 1e-12);
  EXPECT_GT(c.epsilon, g.epsilon);
}

TEST(RdpAccountantTest, ClassicConversionMatchesTfPrivacyComposition) {
  // test_check_composition (values of the classic conversion, kept in its
  // comments): 40000 steps of (q = 1e-4, σ = 0.4) then 100 of (q = 0.1, σ = 2),
  // δ = 1e-5 -> ε = 8.509656 (5 places) at order 2.5.
  const std::vector<double> orders = {1.25, 1.5, 1.75, 2., 2.5, 3., 4., 5., 6., 7., 8.,
                                      10., 12., 14., 16., 20., 24., 28., 32., 64., 256.};
  std::vector<double> rdp;
  for (double a : orders) rdp.push_back(40000 * SampledGaussianRdp(1e-4, 0.4, a) + 100 * SampledGaussianRdp(0.1, 2, a));
  DpGuarantee g = RdpToDp(orders, rdp, 1e-5, RdpConversion::kClassic);
  EXPECT_NEAR(g.epsilon, 8.509656, 5e-6);
  EXPECT_EQ(g.order, 2.5);
  EXPECT_LE(RdpToDp(orders, rdp, 1e-5).epsilon, 8.509656);
}

TEST(RdpAccountantTest, MatchesTfPrivacyDpSgdPrivacy) {
  // compute_dp_sgd_privacy_test.py (dp_accounting RDP, default orders,
  // steps = ceil(epochs · n / batch)):
  //   Test0: n = 60000, batch 150, σ = 1.3, 15 epochs, δ = 1e-5 -> ε = 0.7242234026109595, order 19
  //   Test1: n = 100000, batch 100, σ = 1.0, 30 epochs, δ = 1e-7 -> ε = 1.4154988495444842, order 13
  struct Case {
    double n, batch, sigma, epochs, delta, eps, order;
  };
  for (const Case& c : {Case{60000, 150, 1.3, 15, 1e-5, 0.7242234026109595, 19},
                        Case{100000, 100, 1.0, 30, 1e-7, 1.4154988495444842, 13}}) {
    auto acc = RdpAccountant::Create(c.batch / c.n, c.sigma);
    ASSERT_TRUE(acc.ok());
    acc->Compose(static_cast<int64_t>(std::ceil(c.epochs * c.n / c.batch)));
    DpGuarantee g = acc->Spent(c.delta);
    EXPECT_NEAR(g.epsilon, c.eps, 1e-7) << "n = " << c.n;
    EXPECT_EQ(g.order, c.order);
  }
}

TEST(RdpAccountantTest, MatchesTfPrivacyMnistTutorial) {
  // Abadi et al. 2016's MNIST setting as TF-Privacy's tutorial runs it
  // (tutorials/README.md, "Expected Output"): n = 60000, batch 256, σ = 1.12,
  // δ = 1e-5, steps = epochs · 60000 // 256, orders 1.1, 1.2, ..., 10.9,
  // 12..63, classic conversion. README: ε = 1.00 after 1 epoch, 1.04 after 2,
  // 2.92 after 60 (printed to two decimals).
  std::vector<double> orders;
  for (int x = 1; x < 100; ++x) orders.push_back(1 + x / 10.0);
  for (int a = 12; a < 64; ++a) orders.push_back(a);
  struct Row {
    int epochs;
    double eps;
  };
  for (const Row& row : {Row{1, 1.00}, Row{2, 1.04}, Row{60, 2.92}}) {
    auto acc = RdpAccountant::Create(256.0 / 60000, 1.12, orders);
    ASSERT_TRUE(acc.ok());
    acc->Compose(row.epochs * 60000 / 256);
    const DpGuarantee classic = acc->Spent(1e-5, RdpConversion::kClassic);
    EXPECT_NEAR(classic.epsilon, row.eps, 0.005) << row.epochs << " epochs";
    // The improved conversion is never worse.
    EXPECT_LT(acc->Spent(1e-5).epsilon, classic.epsilon);
  }
  // The paper's σ = 1.1 over 60 epochs (14062 steps): ε ≈ 3.0 with the
  // classic conversion, ≈ 2.6 with the improved one.
  auto acc = RdpAccountant::Create(256.0 / 60000, 1.1, orders);
  ASSERT_TRUE(acc.ok());
  acc->Compose(14062);
  EXPECT_NEAR(acc->Spent(1e-5, RdpConversion::kClassic).epsilon, 3.0, 0.02);
  EXPECT_NEAR(acc->Spent(1e-5).epsilon, 2.6, 0.02);
}

TEST(RdpAccountantTest, ComposesLinearlyAndReportsPerRound) {
  auto acc = MakeRoundAccountant(protocols::DpOptions{.enabled = true, .noise_multiplier = 1.0}, 10, 1000);
  ASSERT_TRUE(acc.ok()) << acc.status();
  EXPECT_DOUBLE_EQ(acc->sampling_rate(), 0.01);
  EXPECT_EQ(acc->Spent(1e-5).epsilon, 0.0);  // nothing released yet
  acc->Compose(1);
  const double one = acc->Spent(1e-5).epsilon;
  EXPECT_DOUBLE_EQ(acc->PerStep(1e-5).epsilon, one);
  acc->Compose(99);
  const double hundred = acc->Spent(1e-5).epsilon;
  EXPECT_GT(hundred, one);
  EXPECT_LT(hundred, 100 * one);  // RDP composition beats linear ε composition
  EXPECT_FALSE(MakeRoundAccountant(protocols::DpOptions{}, 0, 1000).ok());
  EXPECT_FALSE(RdpAccountant::Create(1.5, 1.0).ok());
  EXPECT_FALSE(RdpAccountant::Create(0.1, 1.0, {1.0}).ok());
}

}  // namespace
}  // namespace fedfm::aggregation
