// The k-regular communication graph of SecAgg+ (Bell et al. 2020): each
// client exchanges key shares and pairwise masks with its k neighbours only,
// instead of with all n - 1 others as in Bonawitz et al. 2017.
//
// Construction (a Harary graph under a random relabelling): a permutation pi
// of the clients is drawn from a public seed; clients are placed on a ring in
// the order pi[0], pi[1], ..., pi[n-1], and each is joined to the k/2 nearest
// ring positions on either side; for odd k (n even) also to the opposite
// position i + n/2. The result is exactly k-regular, connected, and the same
// at the server and at every client that knows (n, k, seed). The permutation
// is a Fisher-Yates shuffle driven by the AES-256-CTR stream keyed with
// HKDF-SHA256(seed, salt "fedfm-secagg-v1/graph"), drawing each index by
// rejection sampling on little-endian uint64 words, so it is bit-exactly
// reproducible on every platform.
#ifndef FEDFM_AGGREGATION_SECAGG_GRAPH_H_
#define FEDFM_AGGREGATION_SECAGG_GRAPH_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "aggregation/secagg/crypto.h"

namespace fedfm::secagg {

// The default degree for n clients: the smallest even k >= 3 log2(n), capped
// at n - 1 (a complete graph for small n). n = 100 -> 20, 1000 -> 30,
// 10^4 -> 40. 0 for n < 2.
int DefaultNumNeighbors(int num_clients);

// t = ceil(fraction * k) clamped to 1..k. InvalidArgument unless fraction is
// in (0, 1] and k >= 1. Note: against a server that lies about who dropped
// (no consistency round here), t must exceed k/2, i.e. fraction > 0.5 strictly.
absl::StatusOr<int> ThresholdFromFraction(double fraction, int num_neighbors);

class CommunicationGraph {
 public:
  // InvalidArgument if n < 2, k is not in 1..n-1, or both n and k are odd (no
  // k-regular graph exists).
  static absl::StatusOr<CommunicationGraph> Create(int num_clients, int num_neighbors,
                                                   const Key& seed);

  int num_clients() const { return num_clients_; }
  int degree() const { return degree_; }
  // The k neighbours of `client`, ascending.
  std::span<const uint32_t> Neighbors(uint32_t client) const;
  bool AreNeighbors(uint32_t a, uint32_t b) const;

 private:
  CommunicationGraph(int num_clients, int degree, std::vector<uint32_t> adjacency)
      : num_clients_(num_clients), degree_(degree), adjacency_(std::move(adjacency)) {}

  int num_clients_;
  int degree_;
  std::vector<uint32_t> adjacency_;  // [n, k], each row ascending
};

}  // namespace fedfm::secagg

#endif  // FEDFM_AGGREGATION_SECAGG_GRAPH_H_
