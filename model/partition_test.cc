#include "model/partition.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace fedfm::model {
namespace {

// Random labels with an uneven class balance: class k has weight k + 1.
std::vector<int32_t> RandomLabels(size_t n, int num_labels, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> labels(n);
  const int total = num_labels * (num_labels + 1) / 2;
  for (auto& label : labels) {
    int r = static_cast<int>(rng() % total);
    int k = 0;
    while (r >= k + 1) {
      r -= k + 1;
      ++k;
    }
    label = k;
  }
  return labels;
}

void ExpectExactlyOnce(const Partition& partition, size_t n) {
  std::vector<int> seen(n, 0);
  for (const auto& client : partition) {
    EXPECT_FALSE(client.empty());
    EXPECT_TRUE(std::is_sorted(client.begin(), client.end()));
    for (size_t i : client) {
      ASSERT_LT(i, n);
      ++seen[i];
    }
  }
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(seen[i], 1) << "example " << i;
}

std::vector<double> GlobalDistribution(const std::vector<int32_t>& labels, int num_labels) {
  std::vector<double> p(num_labels, 0.0);
  for (int32_t label : labels) p[label] += 1.0 / static_cast<double>(labels.size());
  return p;
}

// Mean over clients of the largest label fraction.
double MeanMaxLabelFraction(const Partition& partition, const std::vector<int32_t>& labels,
                            int num_labels) {
  auto histogram = LabelHistogram(partition, labels, num_labels);
  double sum = 0;
  for (const auto& counts : histogram) {
    size_t total = std::accumulate(counts.begin(), counts.end(), size_t{0});
    sum += static_cast<double>(*std::max_element(counts.begin(), counts.end())) / static_cast<double>(total);
  }
  return sum / static_cast<double>(histogram.size());
}

size_t MaxSizeGap(const Partition& partition) {
  size_t lo = SIZE_MAX, hi = 0;
  for (const auto& client : partition) {
    lo = std::min(lo, client.size());
    hi = std::max(hi, client.size());
  }
  return hi - lo;
}

TEST(PartitionIidTest, ClientsFollowTheGlobalLabelDistribution) {
  const std::vector<int32_t> labels = RandomLabels(20000, 4, 1);
  auto partition = PartitionIid(labels.size(), 10, 7);
  ASSERT_TRUE(partition.ok()) << partition.status();
  ASSERT_EQ(partition->size(), 10u);
  ExpectExactlyOnce(*partition, labels.size());
  EXPECT_LE(MaxSizeGap(*partition), 1u);
  std::vector<double> global = GlobalDistribution(labels, 4);
  for (const auto& counts : LabelHistogram(*partition, labels, 4)) {
    for (int k = 0; k < 4; ++k) {
      // 2000 examples per client: a binomial standard error is <= 0.011.
      EXPECT_NEAR(static_cast<double>(counts[k]) / 2000.0, global[k], 0.05);
    }
  }
}

TEST(PartitionDirichletTest, AlphaControlsLabelConcentration) {
  const int kLabels = 10;
  const std::vector<int32_t> labels = RandomLabels(10000, kLabels, 2);
  std::vector<double> global = GlobalDistribution(labels, kLabels);
  const double global_max = *std::max_element(global.begin(), global.end());

  auto near_iid = PartitionDirichlet(labels, 20, /*alpha=*/100.0, 3);
  ASSERT_TRUE(near_iid.ok()) << near_iid.status();
  ExpectExactlyOnce(*near_iid, labels.size());
  EXPECT_LE(MaxSizeGap(*near_iid), 1u);
  const double iid_max = MeanMaxLabelFraction(*near_iid, labels, kLabels);
  EXPECT_LT(iid_max, global_max + 0.06) << "alpha=100 should stay close to the global mix";
  // Dir(100 p) has a standard deviation of about 0.04 per label fraction.
  double mean_deviation = 0.0;
  for (const auto& counts : LabelHistogram(*near_iid, labels, kLabels)) {
    for (int k = 0; k < kLabels; ++k) {
      double deviation = std::fabs(static_cast<double>(counts[k]) / 500.0 - global[k]);
      EXPECT_LT(deviation, 0.2);
      mean_deviation += deviation / (20 * kLabels);
    }
  }
  EXPECT_LT(mean_deviation, 0.04);

  // alpha=0.01: q_c is nearly one-hot, but equal client sizes and uneven
  // label counts (the rarest label has ~180 examples, a client 500) force
  // some mixing: the measured mean is ~0.7 against ~0.2 for alpha=100.
  auto concentrated = PartitionDirichlet(labels, 20, /*alpha=*/0.01, 3);
  ASSERT_TRUE(concentrated.ok()) << concentrated.status();
  ExpectExactlyOnce(*concentrated, labels.size());
  EXPECT_LE(MaxSizeGap(*concentrated), 1u);
  const double skewed_max = MeanMaxLabelFraction(*concentrated, labels, kLabels);
  EXPECT_GT(skewed_max, 0.6) << "alpha=0.01 should give mostly one label per client";

  // Balanced labels, as many clients as labels: clients whose (random)
  // dominant labels collide run out and take a second label, so about two
  // labels per client (measured 0.55) against 1/10 + noise for alpha=100.
  std::vector<int32_t> balanced(10000);
  for (size_t i = 0; i < balanced.size(); ++i) balanced[i] = static_cast<int32_t>(i % kLabels);
  auto one_label = PartitionDirichlet(balanced, 10, /*alpha=*/0.01, 3);
  auto uniform = PartitionDirichlet(balanced, 10, /*alpha=*/100.0, 3);
  ASSERT_TRUE(one_label.ok() && uniform.ok());
  const double balanced_skewed = MeanMaxLabelFraction(*one_label, balanced, kLabels);
  const double balanced_uniform = MeanMaxLabelFraction(*uniform, balanced, kLabels);
  EXPECT_GT(balanced_skewed, 0.45);
  EXPECT_LT(balanced_uniform, 0.16);

  // In between, monotone in alpha.
  auto middle = PartitionDirichlet(labels, 20, /*alpha=*/1.0, 3);
  ASSERT_TRUE(middle.ok());
  const double middle_max = MeanMaxLabelFraction(*middle, labels, kLabels);
  EXPECT_GT(middle_max, iid_max);
  EXPECT_LT(middle_max, skewed_max);
}

TEST(PartitionShardsTest, ClientsHoldAtMostTheirShardsLabels) {
  const int kLabels = 10;
  const std::vector<int32_t> labels = RandomLabels(6000, kLabels, 4);
  for (int shards_per_client : {1, 2, 3}) {
    auto partition = PartitionShards(labels, 20, shards_per_client, 5);
    ASSERT_TRUE(partition.ok()) << partition.status();
    ExpectExactlyOnce(*partition, labels.size());
    size_t max_labels = 0;
    for (const auto& counts : LabelHistogram(*partition, labels, kLabels)) {
      size_t held = std::count_if(counts.begin(), counts.end(), [](size_t c) { return c > 0; });
      EXPECT_LE(held, static_cast<size_t>(shards_per_client));
      max_labels = std::max(max_labels, held);
    }
    EXPECT_EQ(max_labels, static_cast<size_t>(shards_per_client));
  }
  auto too_few = PartitionShards(labels, 3, 2, 5);
  EXPECT_EQ(too_few.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_few.status().message().find("6 shards cannot hold 10 labels"), std::string::npos)
      << too_few.status();
}

TEST(PartitionQuantityTest, DirichletSizesSkewWithSmallAlpha) {
  auto cv = [](const Partition& partition) {
    double mean = 0, var = 0;
    for (const auto& c : partition) mean += static_cast<double>(c.size()) / partition.size();
    for (const auto& c : partition) var += std::pow(c.size() - mean, 2) / partition.size();
    return std::sqrt(var) / mean;
  };
  auto skewed = PartitionQuantityDirichlet(10000, 20, 0.3, 6);
  ASSERT_TRUE(skewed.ok()) << skewed.status();
  ExpectExactlyOnce(*skewed, 10000);
  auto even = PartitionQuantityDirichlet(10000, 20, 1000.0, 6);
  ASSERT_TRUE(even.ok());
  ExpectExactlyOnce(*even, 10000);
  // Dir(a * 1) over N clients: size CV = sqrt((N - 1) / (N a + 1)).
  EXPECT_GT(cv(*skewed), 0.8);
  EXPECT_LT(cv(*even), 0.1);
  // Minimum size is honoured even for tiny alpha.
  auto tiny = PartitionQuantityDirichlet(1000, 10, 0.01, 6, /*min_examples=*/20);
  ASSERT_TRUE(tiny.ok());
  for (const auto& client : *tiny) EXPECT_GE(client.size(), 20u);
  EXPECT_FALSE(PartitionQuantityDirichlet(100, 10, 1.0, 6, /*min_examples=*/11).ok());
}

TEST(PartitionQuantityTest, PowerLawSizesFollowRanks) {
  auto partition = PartitionQuantityPowerLaw(10000, 8, 1.0, 7);
  ASSERT_TRUE(partition.ok()) << partition.status();
  ExpectExactlyOnce(*partition, 10000);
  std::vector<size_t> sizes;
  for (const auto& client : *partition) sizes.push_back(client.size());
  std::sort(sizes.rbegin(), sizes.rend());
  // Sizes ~ 1/(r+1) (harmonic weights, sum H_8 = 2.718): 3679, 1839, 1226, ...
  const double h8 = 1 + 1.0 / 2 + 1.0 / 3 + 1.0 / 4 + 1.0 / 5 + 1.0 / 6 + 1.0 / 7 + 1.0 / 8;
  for (size_t r = 0; r < sizes.size(); ++r) {
    EXPECT_NEAR(static_cast<double>(sizes[r]), (10000.0 - 8) / h8 / (r + 1) + 1, 1.0) << r;
  }
  auto flat = PartitionQuantityPowerLaw(1000, 8, 0.0, 7);
  ASSERT_TRUE(flat.ok());
  EXPECT_EQ(MaxSizeGap(*flat), 0u);
}

std::vector<std::string> RandomGroups(size_t n, int num_groups, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::string> groups(n);
  // Skewed group sizes: group g is drawn with weight g + 1.
  std::vector<double> weights(num_groups);
  for (int g = 0; g < num_groups; ++g) weights[g] = g + 1.0;
  std::discrete_distribution<int> pick(weights.begin(), weights.end());
  for (auto& group : groups) group = "speaker" + std::to_string(pick(rng));
  return groups;
}

TEST(PartitionNaturalTest, GroupsStayWhole) {
  const std::vector<std::string> groups = RandomGroups(5000, 30, 8);
  std::set<std::string> names(groups.begin(), groups.end());
  ASSERT_EQ(names.size(), 30u);

  // One client per group, in name order.
  auto per_group = PartitionByGroup(groups, 0, 9);
  ASSERT_TRUE(per_group.ok()) << per_group.status();
  ASSERT_EQ(per_group->size(), 30u);
  ExpectExactlyOnce(*per_group, groups.size());
  auto name = names.begin();
  for (const auto& client : *per_group) {
    for (size_t i : client) EXPECT_EQ(groups[i], *name);
    ++name;
  }

  // Fewer clients: each group on exactly one client, sizes balanced.
  auto fewer = PartitionByGroup(groups, 7, 9);
  ASSERT_TRUE(fewer.ok()) << fewer.status();
  ExpectExactlyOnce(*fewer, groups.size());
  std::map<std::string, std::set<size_t>> owners;
  for (size_t c = 0; c < fewer->size(); ++c) {
    for (size_t i : (*fewer)[c]) owners[groups[i]].insert(c);
  }
  for (const auto& [group, clients] : owners) EXPECT_EQ(clients.size(), 1u) << group;

  // More clients than groups: each client within one group.
  auto more = PartitionByGroup(groups, 50, 9);
  ASSERT_TRUE(more.ok()) << more.status();
  ASSERT_EQ(more->size(), 50u);
  ExpectExactlyOnce(*more, groups.size());
  for (const auto& client : *more) {
    std::set<std::string> held;
    for (size_t i : client) held.insert(groups[i]);
    EXPECT_EQ(held.size(), 1u);
  }

  std::vector<std::string> unnamed = {"a", "", "b"};
  auto bad = PartitionByGroup(unnamed, 0, 1);
  EXPECT_NE(bad.status().message().find("example 1 has no group"), std::string::npos) << bad.status();
}

TEST(PartitionDeterminismTest, SameSeedSameOutputOtherSeedOther) {
  const std::vector<int32_t> labels = RandomLabels(3000, 5, 10);
  const std::vector<std::string> groups = RandomGroups(3000, 12, 11);
  protocols::PartitionOptions options;
  for (const char* scheme : {"iid", "dirichlet", "shards", "quantity", "natural"}) {
    options.scheme = scheme;
    options.alpha = 0.5;
    options.shards_per_client = 2;
    auto a = MakePartition(options, labels.size(), 6, 100, labels, groups);
    auto b = MakePartition(options, labels.size(), 6, 100, labels, groups);
    auto c = MakePartition(options, labels.size(), 6, 101, labels, groups);
    ASSERT_TRUE(a.ok()) << scheme << ": " << a.status();
    ASSERT_TRUE(b.ok() && c.ok()) << scheme;
    ExpectExactlyOnce(*a, labels.size());
    EXPECT_EQ(*a, *b) << scheme;
    EXPECT_NE(*a, *c) << scheme;
  }
}

TEST(PartitionDispatchTest, ErrorsNameTheConfigKey) {
  const std::vector<int32_t> labels = RandomLabels(100, 3, 12);
  protocols::PartitionOptions options;
  options.scheme = "zipf";
  auto unknown = MakePartition(options, 100, 4, 1, labels);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("data.partition.scheme"), std::string::npos);

  options.scheme = "natural";
  EXPECT_NE(MakePartition(options, 100, 4, 1, labels).status().message().find("grouped"),
            std::string::npos);
  options.scheme = "dirichlet";
  EXPECT_NE(MakePartition(options, 100, 4, 1).status().message().find("labelled"), std::string::npos);
  options.alpha = 0;
  auto bad_alpha = MakePartition(options, 100, 4, 1, labels);
  EXPECT_NE(bad_alpha.status().message().find("alpha must be > 0"), std::string::npos) << bad_alpha.status();
  options.scheme = "iid";
  EXPECT_NE(MakePartition(options, 3, 4, 1).status().message().find("4 clients but only 3 examples"),
            std::string::npos);
  std::vector<int32_t> negative = {0, 1, -1, 2};
  auto unlabelled = PartitionDirichlet(negative, 2, 1.0, 1);
  EXPECT_NE(unlabelled.status().message().find("example 2 has no label"), std::string::npos);
}

}  // namespace
}  // namespace fedfm::model
