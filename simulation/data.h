// The data of a simulation: every example once, laid out client by client,
// so that the registry of virtual clients holds two offsets per client and
// a client's Dataset exists only while the client is sampled.
//
//   examples = [client 0 train | client 0 eval | client 1 train | ...]
//   client c: train [begin[c], eval_begin[c]), local eval [eval_begin[c], begin[c + 1])
//
// Which client holds which example: model/partition.h, scheme
// data.partition.* (labels: the class for classification data; for
// next-token data the natural group, e.g. the Shakespeare speaker, as the
// "label" of dirichlet and shards). data.eval_fraction of all examples is
// held out once, before partitioning, from the seed alone; each client's
// share of them is its local evaluation set for federated evaluation rounds
// (a client left with no training example trains on its held-out ones).
// The central evaluation after every round uses data.eval_path's examples
// when set, else the held-out examples in data order (training examples
// when none is held out), at most kMaxCentralEvalExamples of them, evenly
// spaced: the same examples for every partition scheme and number of
// clients over the same data and seed, so that scenarios (and a
// one-client centralized twin) compare on one evaluation set. Torch-free.
#ifndef FEDFM_SIMULATION_DATA_H_
#define FEDFM_SIMULATION_DATA_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/trainer.h"
#include "model/dataset.h"
#include "model/tokenizer.h"
#include "protocols/config/options.h"

namespace fedfm::simulation {

inline constexpr size_t kMaxCentralEvalExamples = 256;

struct SimData {
  std::vector<model::Example> examples;
  std::vector<uint32_t> begin;       // num_clients + 1 offsets into `examples`
  std::vector<uint32_t> eval_begin;  // num_clients offsets
  std::vector<model::Example> central_eval;
  int num_labels = 0;                // > 0 for classification data
  std::string description;           // "tiny Shakespeare, 5,624 windows of 64 tokens, natural over 16 clients"

  int64_t num_clients() const { return static_cast<int64_t>(eval_begin.size()); }
  // Copies client `c`'s examples (train and local eval) into a Dataset.
  client::Dataset ClientDataset(int64_t c) const;
  // The central evaluation set as a Dataset (eval only).
  client::Dataset CentralEvalDataset() const;
  // Bytes of the per-client registry part (the offsets).
  uint64_t RegistryBytes() const;
  // Payload bytes of client c's examples (token ids and targets).
  uint64_t ClientBytes(int64_t c) const;
  int64_t ClientTrainExamples(int64_t c) const { return eval_begin[c] - begin[c]; }
};

// Payload bytes of examples (4 bytes per token id and per target).
uint64_t ExampleBytes(const std::vector<model::Example>& examples);

// Reads data.path in data.format, tokenizes it with `tokenizer` (windows of
// data.seq_len tokens for text; classification texts cut at seq_len) and
// lays it out for `num_clients` clients, all draws from `seed`. Errors name
// the file or the config key (a scheme the data cannot support, more
// clients than examples).
absl::StatusOr<SimData> LoadSimData(const protocols::RunConfig& config, const model::Tokenizer& tokenizer,
                                    int64_t num_clients, uint64_t seed);

// Lays out given examples (already tokenized) the same way; `central_eval`
// empty: taken from the clients' held-out examples. For tests and
// synthetic scale runs.
absl::StatusOr<SimData> LayOutSimData(std::vector<model::Example> examples, std::vector<model::Example> central_eval,
                                      int num_labels, const protocols::DataOptions& options, int64_t num_clients,
                                      uint64_t seed);

}  // namespace fedfm::simulation

#endif  // FEDFM_SIMULATION_DATA_H_
