#include "model/attention.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace fedfm::model {
namespace {

torch::Tensor Random(std::vector<int64_t> shape, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return torch::randn(shape, gen, torch::TensorOptions().dtype(torch::kFloat));
}

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
