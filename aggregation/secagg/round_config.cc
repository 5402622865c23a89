#include "aggregation/secagg/round_config.h"

#include "absl/strings/str_cat.h"

namespace fedfm::secagg {

absl::StatusOr<RoundConfig> MakeRoundConfig(const SecAggParams& params) {
  if (params.num_clients < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("secagg needs at least 2 clients, got ", params.num_clients));
  }
  if (params.vector_length < 1 || params.vector_length > (int64_t{1} << 31)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "secagg vector length must be in 1..2^31 words, got ", params.vector_length));
  }
  if (params.num_neighbors < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "secagg neighbours k must be >= 0 (0 = default), got ", params.num_neighbors));
  }
  const int k =
      params.num_neighbors == 0 ? DefaultNumNeighbors(params.num_clients) : params.num_neighbors;
  absl::StatusOr<CommunicationGraph> graph =
      CommunicationGraph::Create(params.num_clients, k, params.graph_seed);
  if (!graph.ok()) return graph.status();
  absl::StatusOr<int> t = ThresholdFromFraction(params.threshold, k);
  if (!t.ok()) return t.status();

  RoundConfig config;
  config.round_id = params.round_id;
  config.num_clients = params.num_clients;
  config.threshold = *t;
  config.vector_length = params.vector_length;
  config.graph = std::make_shared<const CommunicationGraph>(*std::move(graph));
  return config;
}

absl::StatusOr<RoundConfig> MakeRoundConfig(const protocols::SecAggOptions& options,
                                            int num_clients, int64_t vector_length,
                                            uint64_t round_id, const Key& graph_seed) {
  SecAggParams params;
  params.round_id = round_id;
  params.num_clients = num_clients;
  params.num_neighbors = options.neighbors;
  params.threshold = options.threshold;
  params.vector_length = vector_length;
  params.graph_seed = graph_seed;
  return MakeRoundConfig(params);
}

}  // namespace fedfm::secagg
