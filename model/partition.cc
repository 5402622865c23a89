#include "model/partition.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "model/dataset_rng.h"
#include "protocols/status_macros.h"

namespace fedfm::model {
namespace {

// Sub-seeds, so that one seed gives independent draws for each purpose.
enum Purpose : uint64_t {
  kOrder = 1,
  kClientDraws = 2,
  kPools = 3,
  kShards = 4,
  kSizes = 5,
};

absl::Status CheckClients(size_t num_examples, int num_clients) {
  if (num_clients < 1) {
    return absl::InvalidArgumentError(absl::StrCat("partition: num_clients must be >= 1, got ", num_clients));
  }
  if (num_examples < static_cast<size_t>(num_clients)) {
    return absl::InvalidArgumentError(absl::StrCat("partition: ", num_clients, " clients but only ",
                                                   num_examples, " examples; every client needs one"));
  }
  return absl::OkStatus();
}

absl::Status CheckAlpha(double alpha, const char* what) {
  if (!(alpha > 0.0) || !std::isfinite(alpha)) {
    return absl::InvalidArgumentError(absl::StrCat("partition: ", what, " alpha must be > 0, got ", alpha));
  }
  return absl::OkStatus();
}

// Label counts; InvalidArgument for a negative label.
absl::StatusOr<std::vector<size_t>> CountLabels(std::span<const int32_t> labels) {
  std::vector<size_t> counts;
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("partition: example ", i, " has no label (", labels[i], ")"));
    }
    if (static_cast<size_t>(labels[i]) >= counts.size()) counts.resize(labels[i] + 1, 0);
    ++counts[labels[i]];
  }
  return counts;
}

// Integer sizes summing to `total`, each >= `minimum`, the rest split in
// proportion to `weights` by largest remainder (ties to the lower index).
std::vector<size_t> SizesFromWeights(size_t total, size_t minimum, const std::vector<double>& weights) {
  const size_t n = weights.size();
  std::vector<size_t> sizes(n, minimum);
  const size_t rest = total - minimum * n;
  const double sum = std::accumulate(weights.begin(), weights.end(), 0.0);
  std::vector<std::pair<double, size_t>> remainders;
  size_t assigned = 0;
  for (size_t i = 0; i < n; ++i) {
    const double quota = sum > 0 ? static_cast<double>(rest) * weights[i] / sum
                                 : static_cast<double>(rest) / static_cast<double>(n);
    const auto whole = static_cast<size_t>(std::floor(quota));
    sizes[i] += whole;
    assigned += whole;
    remainders.push_back({quota - static_cast<double>(whole), i});
  }
  std::stable_sort(remainders.begin(), remainders.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t k = 0; assigned < rest; ++k, ++assigned) ++sizes[remainders[k % n].second];
  // Rounding can in theory floor one quota up past its true value.
  for (size_t k = n; assigned > rest; --k) {
    size_t i = remainders[(k - 1) % n].second;
    if (sizes[i] > minimum) {
      --sizes[i];
      --assigned;
    }
  }
  return sizes;
}

// Deals `order` into consecutive runs of `sizes`, each sorted.
Partition DealBySizes(const std::vector<size_t>& order, const std::vector<size_t>& sizes) {
  Partition partition(sizes.size());
  size_t start = 0;
  for (size_t c = 0; c < sizes.size(); ++c) {
    partition[c].assign(order.begin() + start, order.begin() + start + sizes[c]);
    std::sort(partition[c].begin(), partition[c].end());
    start += sizes[c];
  }
  return partition;
}

}  // namespace

absl::StatusOr<Partition> PartitionIid(size_t num_examples, int num_clients, uint64_t seed) {
  FEDFM_RETURN_IF_ERROR(CheckClients(num_examples, num_clients));
  std::vector<size_t> order = Permutation(num_examples, DeriveSeed(seed, kOrder));
  Partition partition(num_clients);
  for (size_t i = 0; i < num_examples; ++i) partition[i % num_clients].push_back(order[i]);
  for (auto& client : partition) std::sort(client.begin(), client.end());
  return partition;
}

absl::StatusOr<Partition> PartitionDirichlet(std::span<const int32_t> labels, int num_clients,
                                             double alpha, uint64_t seed) {
  FEDFM_RETURN_IF_ERROR(CheckClients(labels.size(), num_clients));
  FEDFM_RETURN_IF_ERROR(CheckAlpha(alpha, "dirichlet"));
  FEDFM_ASSIGN_OR_RETURN(std::vector<size_t> counts, CountLabels(labels));
  const size_t n = labels.size();
  std::vector<int32_t> present;  // labels with examples
  for (size_t k = 0; k < counts.size(); ++k) {
    if (counts[k] > 0) present.push_back(static_cast<int32_t>(k));
  }
  const size_t num_present = present.size();
  // pools[j] = shuffled indices of label present[j]; taken from the back.
  std::vector<std::vector<size_t>> pools(num_present);
  {
    std::vector<size_t> slot(counts.size(), 0);
    for (size_t j = 0; j < num_present; ++j) slot[present[j]] = j;
    for (size_t i = 0; i < n; ++i) pools[slot[labels[i]]].push_back(i);
    for (size_t j = 0; j < num_present; ++j) Shuffle(pools[j], DeriveSeed(seed, kPools * 1000003 + j));
  }
  std::vector<double> prior(num_present);
  for (size_t j = 0; j < num_present; ++j) {
    prior[j] = alpha * static_cast<double>(counts[present[j]]) / static_cast<double>(n);
  }
  DataRng rng(DeriveSeed(seed, kClientDraws));
  std::vector<std::vector<double>> q(num_clients);
  for (auto& client_q : q) client_q = rng.Dirichlet(prior);

  std::vector<size_t> remaining(num_clients);
  for (int c = 0; c < num_clients; ++c) {
    remaining[c] = n / num_clients + (static_cast<size_t>(c) < n % num_clients ? 1 : 0);
  }
  Partition partition(num_clients);
  size_t left = n;
  while (left > 0) {
    for (int c = 0; c < num_clients && left > 0; ++c) {
      if (remaining[c] == 0) continue;
      double total = 0.0;
      for (size_t j = 0; j < num_present; ++j) {
        if (!pools[j].empty()) total += q[c][j];
      }
      size_t pick = num_present;
      if (total > 0.0) {
        double r = rng.UniformDouble() * total;
        for (size_t j = 0; j < num_present; ++j) {
          if (pools[j].empty()) continue;
          pick = j;  // the last non-empty label absorbs rounding
          if (r < q[c][j]) break;
          r -= q[c][j];
        }
      } else {
        // q_c is zero on every label left: draw in proportion to what is left.
        double r = static_cast<double>(rng.Uniform(left));
        for (size_t j = 0; j < num_present; ++j) {
          if (r < static_cast<double>(pools[j].size())) {
            pick = j;
            break;
          }
          r -= static_cast<double>(pools[j].size());
        }
      }
      partition[c].push_back(pools[pick].back());
      pools[pick].pop_back();
      --remaining[c];
      --left;
    }
  }
  for (auto& client : partition) std::sort(client.begin(), client.end());
  return partition;
}

absl::StatusOr<Partition> PartitionShards(std::span<const int32_t> labels, int num_clients,
                                          int shards_per_client, uint64_t seed) {
  FEDFM_RETURN_IF_ERROR(CheckClients(labels.size(), num_clients));
  if (shards_per_client < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("partition: shards_per_client must be >= 1, got ", shards_per_client));
  }
  FEDFM_ASSIGN_OR_RETURN(std::vector<size_t> counts, CountLabels(labels));
  const size_t n = labels.size();
  const size_t num_shards = static_cast<size_t>(num_clients) * shards_per_client;
  std::vector<size_t> present;
  for (size_t k = 0; k < counts.size(); ++k) {
    if (counts[k] > 0) present.push_back(k);
  }
  if (num_shards < present.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "partition: ", num_clients, " clients x ", shards_per_client, " shards = ", num_shards,
        " shards cannot hold ", present.size(), " labels one label per shard; raise shards_per_client"));
  }
  if (num_shards > n) {
    return absl::InvalidArgumentError(
        absl::StrCat("partition: ", num_shards, " shards but only ", n, " examples"));
  }
  // Shards per label: proportional to its count, at least one, at most its count.
  std::vector<double> quota(present.size());
  std::vector<size_t> shards(present.size());
  size_t total = 0;
  for (size_t j = 0; j < present.size(); ++j) {
    quota[j] = static_cast<double>(num_shards) * static_cast<double>(counts[present[j]]) /
               static_cast<double>(n);
    shards[j] = std::clamp<size_t>(static_cast<size_t>(std::floor(quota[j])), 1, counts[present[j]]);
    total += shards[j];
  }
  while (total < num_shards) {
    size_t best = present.size();
    for (size_t j = 0; j < present.size(); ++j) {
      if (shards[j] >= counts[present[j]]) continue;
      if (best == present.size() ||
          quota[j] - static_cast<double>(shards[j]) > quota[best] - static_cast<double>(shards[best])) {
        best = j;
      }
    }
    ++shards[best];  // exists: num_shards <= n
    ++total;
  }
  while (total > num_shards) {
    size_t best = present.size();
    for (size_t j = 0; j < present.size(); ++j) {
      if (shards[j] <= 1) continue;
      if (best == present.size() ||
          quota[j] - static_cast<double>(shards[j]) < quota[best] - static_cast<double>(shards[best])) {
        best = j;
      }
    }
    --shards[best];  // exists: num_shards >= labels
    --total;
  }
  // Cut each label's shuffled examples into its shards.
  std::vector<std::vector<size_t>> by_label(counts.size());
  for (size_t i = 0; i < n; ++i) by_label[labels[i]].push_back(i);
  std::vector<std::vector<size_t>> all_shards;
  for (size_t j = 0; j < present.size(); ++j) {
    std::vector<size_t>& members = by_label[present[j]];
    Shuffle(members, DeriveSeed(seed, kPools * 1000003 + present[j]));
    const size_t m = members.size();
    for (size_t s = 0; s < shards[j]; ++s) {
      size_t begin = m * s / shards[j];
      size_t end = m * (s + 1) / shards[j];
      all_shards.emplace_back(members.begin() + begin, members.begin() + end);
    }
  }
  Shuffle(all_shards, DeriveSeed(seed, kShards));
  Partition partition(num_clients);
  for (size_t s = 0; s < all_shards.size(); ++s) {
    auto& client = partition[s / shards_per_client];
    client.insert(client.end(), all_shards[s].begin(), all_shards[s].end());
  }
  for (auto& client : partition) std::sort(client.begin(), client.end());
  return partition;
}

absl::StatusOr<Partition> PartitionQuantityDirichlet(size_t num_examples, int num_clients,
                                                     double alpha, uint64_t seed,
                                                     size_t min_examples) {
  FEDFM_RETURN_IF_ERROR(CheckClients(num_examples, num_clients));
  FEDFM_RETURN_IF_ERROR(CheckAlpha(alpha, "quantity"));
  min_examples = std::max<size_t>(min_examples, 1);
  if (num_examples < min_examples * num_clients) {
    return absl::InvalidArgumentError(absl::StrCat("partition: ", num_examples, " examples cannot give ",
                                                   num_clients, " clients ", min_examples, " each"));
  }
  DataRng rng(DeriveSeed(seed, kSizes));
  std::vector<double> weights = rng.Dirichlet(std::vector<double>(num_clients, alpha));
  std::vector<size_t> sizes = SizesFromWeights(num_examples, min_examples, weights);
  return DealBySizes(Permutation(num_examples, DeriveSeed(seed, kOrder)), sizes);
}

absl::StatusOr<Partition> PartitionQuantityPowerLaw(size_t num_examples, int num_clients,
                                                    double exponent, uint64_t seed,
                                                    size_t min_examples) {
  FEDFM_RETURN_IF_ERROR(CheckClients(num_examples, num_clients));
  if (!(exponent >= 0.0) || !std::isfinite(exponent)) {
    return absl::InvalidArgumentError(absl::StrCat("partition: power-law exponent must be >= 0, got ", exponent));
  }
  min_examples = std::max<size_t>(min_examples, 1);
  if (num_examples < min_examples * num_clients) {
    return absl::InvalidArgumentError(absl::StrCat("partition: ", num_examples, " examples cannot give ",
                                                   num_clients, " clients ", min_examples, " each"));
  }
  std::vector<size_t> rank = Permutation(num_clients, DeriveSeed(seed, kSizes));
  std::vector<double> weights(num_clients);
  for (int c = 0; c < num_clients; ++c) {
    weights[c] = std::pow(static_cast<double>(rank[c] + 1), -exponent);
  }
  std::vector<size_t> sizes = SizesFromWeights(num_examples, min_examples, weights);
  return DealBySizes(Permutation(num_examples, DeriveSeed(seed, kOrder)), sizes);
}

absl::StatusOr<Partition> PartitionByGroup(std::span<const std::string> groups, int num_clients,
                                           uint64_t seed) {
  const size_t n = groups.size();
  std::map<std::string, std::vector<size_t>> members;  // sorted by name
  for (size_t i = 0; i < n; ++i) {
    if (groups[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("partition: example ", i, " has no group"));
    }
    members[groups[i]].push_back(i);
  }
  const size_t num_groups = members.size();
  if (num_clients < 0) {
    return absl::InvalidArgumentError(absl::StrCat("partition: num_clients must be >= 0, got ", num_clients));
  }
  if (num_groups == 0) return absl::InvalidArgumentError("partition: no examples to partition by group");
  const int clients = num_clients == 0 ? static_cast<int>(num_groups) : num_clients;
  FEDFM_RETURN_IF_ERROR(CheckClients(n, clients));
  std::vector<std::vector<size_t>*> by_group;
  for (auto& [name, indices] : members) by_group.push_back(&indices);

  Partition partition(clients);
  if (num_clients == 0) {
    for (size_t g = 0; g < num_groups; ++g) partition[g] = *by_group[g];
    return partition;
  }
  if (static_cast<size_t>(clients) <= num_groups) {
    // Largest group first (ties in a seeded random order) to the client with
    // the fewest examples so far (ties to the lower id).
    std::vector<size_t> tie_rank = Permutation(num_groups, DeriveSeed(seed, kOrder));
    std::vector<size_t> order(num_groups);
    std::iota(order.begin(), order.end(), size_t{0});
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      if (by_group[a]->size() != by_group[b]->size()) return by_group[a]->size() > by_group[b]->size();
      return tie_rank[a] < tie_rank[b];
    });
    std::vector<size_t> load(clients, 0);
    for (size_t g : order) {
      size_t target = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
      partition[target].insert(partition[target].end(), by_group[g]->begin(), by_group[g]->end());
      load[target] += by_group[g]->size();
    }
    // Which client id gets which bundle of groups is up to the seed.
    Shuffle(partition, DeriveSeed(seed, kShards));
  } else {
    // Clients per group in proportion to its size, at least one, at most its size.
    std::vector<double> weights(num_groups);
    for (size_t g = 0; g < num_groups; ++g) weights[g] = static_cast<double>(by_group[g]->size());
    std::vector<size_t> per_group = SizesFromWeights(clients, 1, weights);
    // Move clients from groups that got more than their size to those with room.
    for (size_t g = 0; g < num_groups; ++g) {
      while (per_group[g] > by_group[g]->size()) {
        --per_group[g];
        size_t best = num_groups;
        for (size_t h = 0; h < num_groups; ++h) {
          if (per_group[h] >= by_group[h]->size()) continue;
          if (best == num_groups ||
              weights[h] / static_cast<double>(per_group[h]) > weights[best] / static_cast<double>(per_group[best])) {
            best = h;
          }
        }
        ++per_group[best];  // exists: clients <= n
      }
    }
    int next_client = 0;
    for (size_t g = 0; g < num_groups; ++g) {
      std::vector<size_t> shuffled = *by_group[g];
      Shuffle(shuffled, DeriveSeed(seed, kPools * 1000003 + g));
      const size_t m = shuffled.size();
      for (size_t k = 0; k < per_group[g]; ++k) {
        partition[next_client++].assign(shuffled.begin() + m * k / per_group[g],
                                        shuffled.begin() + m * (k + 1) / per_group[g]);
      }
    }
  }
  for (auto& client : partition) std::sort(client.begin(), client.end());
  return partition;
}

absl::StatusOr<Partition> MakePartition(const protocols::PartitionOptions& options,
                                        size_t num_examples, int num_clients, uint64_t seed,
                                        std::span<const int32_t> labels,
                                        std::span<const std::string> groups) {
  if (!labels.empty() && labels.size() != num_examples) {
    return absl::InvalidArgumentError(absl::StrCat("partition: ", labels.size(), " labels for ",
                                                   num_examples, " examples"));
  }
  if (!groups.empty() && groups.size() != num_examples) {
    return absl::InvalidArgumentError(absl::StrCat("partition: ", groups.size(), " groups for ",
                                                   num_examples, " examples"));
  }
  const std::string& scheme = options.scheme;
  auto need_labels = [&]() -> absl::Status {
    if (labels.empty() && num_examples > 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config key \"data.partition.scheme\": \"", scheme,
          "\" needs labelled examples (a classification data set)"));
    }
    return absl::OkStatus();
  };
  absl::StatusOr<Partition> result;
  if (scheme == "iid") {
    result = PartitionIid(num_examples, num_clients, seed);
  } else if (scheme == "dirichlet") {
    FEDFM_RETURN_IF_ERROR(need_labels());
    result = PartitionDirichlet(labels, num_clients, options.alpha, seed);
  } else if (scheme == "shards") {
    FEDFM_RETURN_IF_ERROR(need_labels());
    result = PartitionShards(labels, num_clients, options.shards_per_client, seed);
  } else if (scheme == "quantity") {
    result = PartitionQuantityDirichlet(num_examples, num_clients, options.alpha, seed);
  } else if (scheme == "natural") {
    if (groups.empty() && num_examples > 0) {
      return absl::InvalidArgumentError(
          "config key \"data.partition.scheme\": \"natural\" needs grouped examples "
          "(shakespeare speakers, spamassassin source groups, jsonl \"group\")");
    }
    result = PartitionByGroup(groups, num_clients, seed);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "config key \"data.partition.scheme\": unknown scheme \"", scheme,
        "\"; expected iid, dirichlet, shards, quantity or natural"));
  }
  if (!result.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config key \"data.partition\" (scheme \"", scheme,
                                                   "\"): ", result.status().message()));
  }
  return result;
}

std::vector<std::vector<size_t>> LabelHistogram(const Partition& partition,
                                                std::span<const int32_t> labels, int num_labels) {
  std::vector<std::vector<size_t>> counts(partition.size(), std::vector<size_t>(std::max(num_labels, 0), 0));
  for (size_t c = 0; c < partition.size(); ++c) {
    for (size_t i : partition[c]) {
      if (i < labels.size() && labels[i] >= 0 && labels[i] < num_labels) ++counts[c][labels[i]];
    }
  }
  return counts;
}

}  // namespace fedfm::model
