// The public parameters of one SecAgg+ round, identical at the server and at
// every client of the round.
#ifndef FEDFM_AGGREGATION_SECAGG_ROUND_CONFIG_H_
#define FEDFM_AGGREGATION_SECAGG_ROUND_CONFIG_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "aggregation/secagg/crypto.h"
#include "aggregation/secagg/graph.h"
#include "protocols/config/options.h"

namespace fedfm::secagg {

// What the coordinator decides for a round (all public).
struct SecAggParams {
  uint64_t round_id = 0;       // binds every key, seed and ciphertext to this round
  int num_clients = 0;         // n selected clients, indexed 0..n-1; >= 2
  int num_neighbors = 0;       // k; 0 = DefaultNumNeighbors(n)
  double threshold = 0.5;      // t as a fraction of k, (0, 1]; see ThresholdFromFraction
  int64_t vector_length = 0;   // P: uint32 words per input, 1..2^31
  Key graph_seed{};            // public randomness for the communication graph
};

struct RoundConfig {
  uint64_t round_id = 0;
  int num_clients = 0;
  int threshold = 0;          // t: shares needed to reconstruct a client's secrets
  int64_t vector_length = 0;  // P
  std::shared_ptr<const CommunicationGraph> graph;  // shared, immutable

  int num_neighbors() const { return graph->degree(); }
};

// Validates `params`, resolves k and t, and builds the graph.
// InvalidArgument naming the bad value.
absl::StatusOr<RoundConfig> MakeRoundConfig(const SecAggParams& params);

// As above from the run config's [secagg] section.
absl::StatusOr<RoundConfig> MakeRoundConfig(const protocols::SecAggOptions& options,
                                            int num_clients, int64_t vector_length,
                                            uint64_t round_id, const Key& graph_seed);

}  // namespace fedfm::secagg

#endif  // FEDFM_AGGREGATION_SECAGG_ROUND_CONFIG_H_
