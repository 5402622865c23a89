#include "model/attention.h"

#include <cmath>
#include <vector>
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include "gtest/gtest.h"
#include "model/testing/tensors.h"

namespace fedfm::model {
namespace {

using test_util::Random;

// Attention as a loop over every (batch, head, query, key), in double.
torch::Tensor NaiveAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  const int64_t b = q.size(0), h = q.size(1), tq = q.size(2), hd = q.size(3);
  const int64_t kvh = k.size(1), tk = k.size(2), group = h / kvh;
  auto qa = q.to(torch::kDouble).contiguous();
  auto ka = k.to(torch::kDouble).contiguous();
  auto va = v.to(torch::kDouble).contiguous();
  auto out = torch::zeros({b, h, tq, hd}, torch::kDouble);
  auto Q = qa.accessor<double, 4>();
  auto K = ka.accessor<double, 4>();
  auto V = va.accessor<double, 4>();
  auto O = out.accessor<double, 4>();
  for (int64_t bi = 0; bi < b; ++bi) {
    for (int64_t hi = 0; hi < h; ++hi) {
      const int64_t kv = hi / group;
      for (int64_t i = 0; i < tq; ++i) {
        const int64_t last = tk - tq + i;  // the last key query i may see
        std::vector<double> scores(last + 1);
        double max_score = -INFINITY;
        for (int64_t j = 0; j <= last; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < hd; ++d) dot += Q[bi][hi][i][d] * K[bi][kv][j][d];
          scores[j] = dot / std::sqrt(static_cast<double>(hd));
          max_score = std::max(max_score, scores[j]);
        }
        double denom = 0;
        for (double& s : scores) denom += (s = std::exp(s - max_score));
        for (int64_t j = 0; j <= last; ++j) {
          for (int64_t d = 0; d < hd; ++d) O[bi][hi][i][d] += scores[j] / denom * V[bi][kv][j][d];
        }
      }
    }
  }
  return out.to(torch::kFloat);
}

void ExpectClose(const torch::Tensor& got, const torch::Tensor& want, double atol) {
  ASSERT_EQ(got.sizes(), want.sizes());
  const double err = (got.to(torch::kFloat) - want.to(torch::kFloat)).abs().max().item<double>();
  EXPECT_LT(err, atol);
}

TEST(ModelAttentionTest, ReferenceMatchesNaiveLoopWithGroupedHeads) {
  // B = 2, H = 4, KV = 2, T = 7, hd = 8.
  torch::Tensor q = Random({2, 4, 7, 8}, 1), k = Random({2, 2, 7, 8}, 2), v = Random({2, 2, 7, 8}, 3);
  ExpectClose(CausalAttentionReference(q, k, v), NaiveAttention(q, k, v), 1e-5);
}

TEST(ModelAttentionTest, ReferenceMatchesNaiveLoopWithCachedKeys) {
  // 3 new queries after 5 cached positions; and one query (decoding).
  torch::Tensor k = Random({1, 2, 8, 16}, 5), v = Random({1, 2, 8, 16}, 6);
  torch::Tensor q3 = Random({1, 6, 3, 16}, 4);
  ExpectClose(CausalAttentionReference(q3, k, v), NaiveAttention(q3, k, v), 1e-5);
  torch::Tensor q1 = Random({1, 6, 1, 16}, 7);
  ExpectClose(CausalAttentionReference(q1, k, v), NaiveAttention(q1, k, v), 1e-5);
}

TEST(ModelAttentionTest, FusedMatchesReferenceWhereAvailable) {
  if (!FusedAttentionAvailable()) GTEST_SKIP() << "this LibTorch has no scaled_dot_product_attention";
  torch::Tensor q = Random({2, 4, 9, 8}, 11), k = Random({2, 2, 9, 8}, 12), v = Random({2, 2, 9, 8}, 13);
  ExpectClose(CausalAttentionFused(q, k, v), CausalAttentionReference(q, k, v), 1e-5);
  torch::Tensor kc = Random({2, 2, 12, 8}, 14), vc = Random({2, 2, 12, 8}, 15);
  torch::Tensor q3 = Random({2, 4, 3, 8}, 16), q1 = Random({2, 4, 1, 8}, 17);
  ExpectClose(CausalAttentionFused(q3, kc, vc), CausalAttentionReference(q3, kc, vc), 1e-5);
  ExpectClose(CausalAttentionFused(q1, kc, vc), CausalAttentionReference(q1, kc, vc), 1e-5);
}

TEST(ModelAttentionTest, DefaultPathMatchesNaiveLoop) {
  torch::Tensor q = Random({1, 8, 5, 8}, 21), k = Random({1, 4, 5, 8}, 22), v = Random({1, 4, 5, 8}, 23);
  ExpectClose(CausalAttention(q, k, v), NaiveAttention(q, k, v), 1e-5);
}

TEST(ModelAttentionTest, GradientsFlowThroughReference) {
  torch::Tensor q = Random({1, 2, 4, 8}, 31).requires_grad_(), k = Random({1, 1, 4, 8}, 32).requires_grad_();
  torch::Tensor v = Random({1, 1, 4, 8}, 33).requires_grad_();
  CausalAttentionReference(q, k, v).square().sum().backward();
  for (const torch::Tensor* t : {&q, &k, &v}) {
    ASSERT_TRUE(t->grad().defined());
    EXPECT_GT(t->grad().abs().sum().item<double>(), 0.0);
  }
}

// Forward and gradients of CausalAttentionCpu against the reference, for a
// random upstream gradient. q, k, v come in as the transformer makes them:
// [B, T, heads, hd] storage transposed to [B, heads, T, hd].
void ExpectCpuMatchesReference(int64_t b, int64_t heads, int64_t kv_heads, int64_t tq, int64_t tk, int64_t hd,
                               uint64_t seed) {
  SCOPED_TRACE(testing::Message() << "B " << b << " H " << heads << " KV " << kv_heads << " Tq " << tq << " Tk "
                                  << tk << " hd " << hd);
  const torch::Tensor q0 = Random({b, tq, heads, hd}, seed).transpose(1, 2);
  const torch::Tensor k0 = Random({b, tk, kv_heads, hd}, seed + 1).transpose(1, 2);
  const torch::Tensor v0 = Random({b, tk, kv_heads, hd}, seed + 2).transpose(1, 2);
  const torch::Tensor upstream = Random({b, heads, tq, hd}, seed + 3);
  auto run = [&](bool fused) {
    torch::Tensor q = q0.clone().requires_grad_(), k = k0.clone().requires_grad_(), v = v0.clone().requires_grad_();
    torch::Tensor out = fused ? CausalAttentionCpu(q, k, v) : CausalAttentionReference(q, k, v);
    (out * upstream).sum().backward();
    return std::vector<torch::Tensor>{out.detach(), q.grad(), k.grad(), v.grad()};
  };
  const std::vector<torch::Tensor> got = run(true), want = run(false);
  const char* names[] = {"output", "dq", "dk", "dv"};
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(names[i]);
    ASSERT_TRUE(got[i].defined());
    EXPECT_GT(want[i].abs().max().item<double>(), 0.1);
    ExpectClose(got[i], want[i], 2e-5 * std::max(1.0, want[i].abs().max().item<double>()));
  }
}

TEST(ModelAttentionTest, CpuKernelsMatchReferenceForwardAndGradients) {
  ExpectCpuMatchesReference(/*b=*/2, /*heads=*/8, /*kv_heads=*/4, /*tq=*/37, /*tk=*/37, /*hd=*/8, 61);
  ExpectCpuMatchesReference(/*b=*/3, /*heads=*/4, /*kv_heads=*/4, /*tq=*/16, /*tk=*/16, /*hd=*/16, 65);
  ExpectCpuMatchesReference(/*b=*/1, /*heads=*/6, /*kv_heads=*/2, /*tq=*/130, /*tk=*/130, /*hd=*/12, 69);
  ExpectCpuMatchesReference(/*b=*/2, /*heads=*/4, /*kv_heads=*/1, /*tq=*/2, /*tk=*/2, /*hd=*/8, 73);
  // After cached positions: several queries, and one (decoding).
  ExpectCpuMatchesReference(/*b=*/2, /*heads=*/4, /*kv_heads=*/2, /*tq=*/5, /*tk=*/19, /*hd=*/8, 77);
  ExpectCpuMatchesReference(/*b=*/1, /*heads=*/4, /*kv_heads=*/2, /*tq=*/1, /*tk=*/9, /*hd=*/4, 81);
}

TEST(ModelAttentionTest, CpuKernelsMatchNaiveLoopOnContiguousInputs) {
  torch::Tensor q = Random({2, 4, 11, 8}, 91), k = Random({2, 2, 11, 8}, 92), v = Random({2, 2, 11, 8}, 93);
  ExpectClose(CausalAttentionCpu(q, k, v), NaiveAttention(q, k, v), 1e-5);
  torch::NoGradGuard no_grad;
  ExpectClose(CausalAttentionCpu(q, k, v), NaiveAttention(q, k, v), 1e-5);
}

TEST(ModelAttentionTest, CpuKernelsAgreeOnLargeScores) {
  // Scores of a few hundred: the softmax must subtract each row's maximum.
  torch::Tensor q = 40 * Random({1, 2, 20, 8}, 95), k = 40 * Random({1, 2, 20, 8}, 96), v = Random({1, 2, 20, 8}, 97);
  torch::Tensor got = CausalAttentionCpu(q, k, v);
  EXPECT_TRUE(torch::isfinite(got).all().item<bool>());
  ExpectClose(got, NaiveAttention(q, k, v), 1e-4);
}

TEST(ModelAttentionTest, CpuKernelsKeepTinyGradientsAndTheFloatingPointMode) {
  // Far-away keys get probabilities ~1e-30; times an upstream gradient of
  // 1e-9 that is below float's normal range, which the kernels flush to zero.
  torch::Tensor q = (8 * Random({1, 2, 24, 8}, 111)).requires_grad_();
  torch::Tensor k = (8 * Random({1, 2, 24, 8}, 112)).requires_grad_(), v = Random({1, 2, 24, 8}, 113).requires_grad_();
  const torch::Tensor upstream = 1e-9 * Random({1, 2, 24, 8}, 114);
#if defined(__x86_64__)
  const unsigned int mode = _mm_getcsr();
#endif
  (CausalAttentionCpu(q, k, v) * upstream).sum().backward();
#if defined(__x86_64__)
  EXPECT_EQ(_mm_getcsr(), mode);
#endif
  const torch::Tensor dv = v.grad().clone();
  v.grad().zero_();
  (CausalAttentionReference(q, k, v) * upstream).sum().backward();
  EXPECT_GT(dv.abs().max().item<double>(), 1e-10);
  EXPECT_LT((dv - v.grad()).abs().max().item<double>(), 1e-5 * v.grad().abs().max().item<double>());
}

TEST(ModelAttentionTest, DefaultPathTakesCpuKernelsForFloatOnCpu) {
  // CausalAttentionCpu's output is [B, Tq, H, hd] storage; the reference's is not.
  torch::Tensor q = Random({1, 4, 6, 8}, 101), k = Random({1, 2, 6, 8}, 102), v = Random({1, 2, 6, 8}, 103);
  EXPECT_TRUE(CpuAttentionSupports(q, k, v));
  EXPECT_TRUE(CausalAttention(q, k, v).transpose(1, 2).is_contiguous());
  EXPECT_FALSE(CpuAttentionSupports(q.to(torch::kBFloat16), k.to(torch::kBFloat16), v.to(torch::kBFloat16)));
  EXPECT_THROW(CausalAttentionCpu(q.to(torch::kDouble), k.to(torch::kDouble), v.to(torch::kDouble)), c10::Error);
}

TEST(ModelAttentionTest, BfloatCloseToFloat) {
  torch::Tensor q = Random({1, 4, 6, 16}, 41), k = Random({1, 2, 6, 16}, 42), v = Random({1, 2, 6, 16}, 43);
  torch::Tensor want = CausalAttention(q, k, v);
  torch::Tensor got = CausalAttention(q.to(torch::kBFloat16), k.to(torch::kBFloat16), v.to(torch::kBFloat16));
  EXPECT_EQ(got.scalar_type(), torch::kBFloat16);
  ExpectClose(got, want, 0.05);
}

TEST(ModelAttentionTest, RejectsMismatchedHeads) {
  torch::Tensor q = Random({1, 3, 4, 8}, 51), k = Random({1, 2, 4, 8}, 52);
  EXPECT_THROW(CausalAttentionReference(q, k, k), c10::Error);
}

}  // namespace
}  // namespace fedfm::model
