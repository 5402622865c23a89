#include "aggregation/secagg/graph.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

namespace fedfm::secagg {
namespace {

Key Seed(uint8_t tag) {
  Key k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(31 * i + tag);
  return k;
}

void ExpectRegularSymmetric(const CommunicationGraph& g) {
  const int n = g.num_clients();
  const int k = g.degree();
  for (int u = 0; u < n; ++u) {
    std::span<const uint32_t> row = g.Neighbors(u);
    ASSERT_EQ(static_cast<int>(row.size()), k);
    std::set<uint32_t> distinct(row.begin(), row.end());
    EXPECT_EQ(static_cast<int>(distinct.size()), k) << "client " << u;
    EXPECT_FALSE(distinct.count(u)) << "self loop at " << u;
    EXPECT_TRUE(std::is_sorted(row.begin(), row.end()));
    for (uint32_t v : row) {
      ASSERT_LT(v, static_cast<uint32_t>(n));
      EXPECT_TRUE(g.AreNeighbors(v, u)) << u << " - " << v << " is one-way";
    }
  }
}

TEST(SecAggGraphTest, IsKRegularForEvenAndOddDegrees) {
  struct Case {
    int n, k;
  };
  for (Case c : {Case{20, 4}, Case{20, 7}, Case{101, 20}, Case{10, 9}, Case{9, 8}, Case{2, 1},
                 Case{3, 2}, Case{64, 18}}) {
    absl::StatusOr<CommunicationGraph> g = CommunicationGraph::Create(c.n, c.k, Seed(1));
    ASSERT_TRUE(g.ok()) << c.n << " " << c.k << ": " << g.status();
    EXPECT_EQ(g->degree(), c.k);
    ExpectRegularSymmetric(*g);
  }
}

TEST(SecAggGraphTest, DeterministicFromSeed) {
  absl::StatusOr<CommunicationGraph> a = CommunicationGraph::Create(50, 12, Seed(7));
  absl::StatusOr<CommunicationGraph> b = CommunicationGraph::Create(50, 12, Seed(7));
  absl::StatusOr<CommunicationGraph> c = CommunicationGraph::Create(50, 12, Seed(8));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  bool any_difference = false;
  for (uint32_t u = 0; u < 50; ++u) {
    std::vector<uint32_t> ra(a->Neighbors(u).begin(), a->Neighbors(u).end());
    std::vector<uint32_t> rb(b->Neighbors(u).begin(), b->Neighbors(u).end());
    std::vector<uint32_t> rc(c->Neighbors(u).begin(), c->Neighbors(u).end());
    EXPECT_EQ(ra, rb);
    any_difference |= ra != rc;
  }
  EXPECT_TRUE(any_difference) << "another seed should give another graph";
}

TEST(SecAggGraphTest, PermutationScattersRingNeighbours) {
  // Without the relabelling, client 0's neighbours would be 1, 2, n-1, n-2.
  absl::StatusOr<CommunicationGraph> g = CommunicationGraph::Create(100, 4, Seed(3));
  ASSERT_TRUE(g.ok());
  int ring_like = 0;
  for (uint32_t u = 0; u < 100; ++u) {
    for (uint32_t v : g->Neighbors(u)) ring_like += (v == (u + 1) % 100) ? 1 : 0;
  }
  EXPECT_LT(ring_like, 20);
}

TEST(SecAggGraphTest, RejectsImpossibleParameters) {
  EXPECT_FALSE(CommunicationGraph::Create(1, 1, Seed(0)).ok());
  EXPECT_FALSE(CommunicationGraph::Create(10, 0, Seed(0)).ok());
  EXPECT_FALSE(CommunicationGraph::Create(10, 10, Seed(0)).ok());
  absl::StatusOr<CommunicationGraph> odd = CommunicationGraph::Create(9, 3, Seed(0));
  EXPECT_EQ(odd.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(odd.status().message().find("both odd"), std::string::npos) << odd.status();
}

TEST(SecAggGraphTest, DefaultDegreeIsLogarithmic) {
  EXPECT_EQ(DefaultNumNeighbors(1), 0);
  EXPECT_EQ(DefaultNumNeighbors(2), 1);
  EXPECT_EQ(DefaultNumNeighbors(8), 7);     // 3 log2 8 = 9 -> 10, capped at 7
  EXPECT_EQ(DefaultNumNeighbors(100), 20);  // 19.9 -> 20
  EXPECT_EQ(DefaultNumNeighbors(1000), 30);
  EXPECT_EQ(DefaultNumNeighbors(1024), 30);
  EXPECT_EQ(DefaultNumNeighbors(10000), 40);
  for (int n = 2; n < 300; ++n) {
    const int k = DefaultNumNeighbors(n);
    EXPECT_TRUE(CommunicationGraph::Create(n, k, Seed(0)).ok()) << "n = " << n << ", k = " << k;
  }
}

TEST(SecAggGraphTest, ThresholdIsAFractionOfK) {
  EXPECT_EQ(*ThresholdFromFraction(0.5, 20), 10);
  EXPECT_EQ(*ThresholdFromFraction(0.51, 20), 11);
  EXPECT_EQ(*ThresholdFromFraction(1.0, 7), 7);
  EXPECT_EQ(*ThresholdFromFraction(0.01, 7), 1);
  EXPECT_EQ(*ThresholdFromFraction(2.0 / 3.0, 6), 4);
  EXPECT_FALSE(ThresholdFromFraction(0.0, 10).ok());
  EXPECT_FALSE(ThresholdFromFraction(1.5, 10).ok());
  EXPECT_FALSE(ThresholdFromFraction(0.5, 0).ok());
}

}  // namespace
}  // namespace fedfm::secagg
