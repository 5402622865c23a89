// Partitioners: which examples each simulated client holds. Pure functions
// of their inputs and an explicit seed: the same arguments give the same
// partition on every platform with the same libm (integer draws are exact;
// see dataset_rng.h). Every example goes to exactly one client.
//
// Schemes (protocols::PartitionOptions::scheme):
//   "iid"        uniform shuffle, sizes differ by at most one.
//   "dirichlet"  label skew (Hsu et al. 2019): client c draws its label
//                distribution q_c ~ Dir(alpha * p), p = the global label
//                distribution; sizes are equal (to one) and clients take
//                their examples one at a time in round-robin order, each
//                label drawn from q_c restricted to the labels with examples
//                left. alpha -> infinity is IID, alpha -> 0 one label per
//                client (as far as the label counts allow).
//   "shards"     label shards (McMahan et al. 2017): the examples of each
//                label are cut into pure shards (one label per shard; labels
//                get shards in proportion to their counts, at least one), the
//                shards shuffled and dealt shards_per_client to each client,
//                so a client holds at most shards_per_client labels.
//   "quantity"   quantity skew: client sizes ~ n * Dir(alpha * 1) (at least
//                min_examples each), examples IID.
//   "natural"    by group (Shakespeare speaker, SpamAssassin source group):
//                with at most as many clients as groups, whole groups go to
//                clients (largest group first, to the client holding the
//                fewest examples; the seed picks which client id gets which
//                bundle); with more clients than groups, each group
//                gets clients in proportion to its size (at least one) and is
//                split IID among them, so a client never mixes groups.
// Also: power-law quantity skew (PartitionQuantityPowerLaw).
#ifndef FEDFM_MODEL_PARTITION_H_
#define FEDFM_MODEL_PARTITION_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "protocols/config/options.h"

namespace fedfm::model {

// partition[c] = the dataset indices of client c, ascending.
using Partition = std::vector<std::vector<size_t>>;

// Errors: InvalidArgument for num_clients < 1, more clients than examples,
// alpha <= 0, a negative label (naming its index), shards fewer than labels.

absl::StatusOr<Partition> PartitionIid(size_t num_examples, int num_clients, uint64_t seed);

absl::StatusOr<Partition> PartitionDirichlet(std::span<const int32_t> labels, int num_clients,
                                             double alpha, uint64_t seed);

absl::StatusOr<Partition> PartitionShards(std::span<const int32_t> labels, int num_clients,
                                          int shards_per_client, uint64_t seed);

absl::StatusOr<Partition> PartitionQuantityDirichlet(size_t num_examples, int num_clients,
                                                     double alpha, uint64_t seed,
                                                     size_t min_examples = 1);

// Sizes proportional to (rank + 1)^-exponent, ranks shuffled over clients,
// at least min_examples each; exponent >= 0 (0 = equal sizes).
absl::StatusOr<Partition> PartitionQuantityPowerLaw(size_t num_examples, int num_clients,
                                                    double exponent, uint64_t seed,
                                                    size_t min_examples = 1);

// `groups[i]` is example i's group; empty names are an error (naming the
// index). num_clients 0 = one client per group, in sorted group-name order.
absl::StatusOr<Partition> PartitionByGroup(std::span<const std::string> groups, int num_clients,
                                           uint64_t seed);

// The scheme named in `options` ("iid", "dirichlet", "shards", "quantity",
// "natural"). `labels` is needed by dirichlet / shards, `groups` by natural;
// both may be empty otherwise, but when given they have one entry per
// example. InvalidArgument names the config key on a bad scheme or input.
absl::StatusOr<Partition> MakePartition(const protocols::PartitionOptions& options,
                                        size_t num_examples, int num_clients, uint64_t seed,
                                        std::span<const int32_t> labels = {},
                                        std::span<const std::string> groups = {});

// counts[c][k] = examples of client c with label k; labels outside
// [0, num_labels) are not counted.
std::vector<std::vector<size_t>> LabelHistogram(const Partition& partition,
                                                std::span<const int32_t> labels, int num_labels);

}  // namespace fedfm::model

#endif  // FEDFM_MODEL_PARTITION_H_
