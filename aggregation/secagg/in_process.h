// Runs one whole SecAgg+ round in process: n SecAggClient and one
// SecAggServer exchanging the serialized bytes of every message (so byte
// counts are the real wire sizes), with dropouts injected at chosen points.
// Used by the simulation, the `fedfm bench secagg` command and tests.
#ifndef FEDFM_AGGREGATION_SECAGG_IN_PROCESS_H_
#define FEDFM_AGGREGATION_SECAGG_IN_PROCESS_H_

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "aggregation/secagg/crypto.h"
#include "aggregation/secagg/round_config.h"
#include "aggregation/secagg/server.h"

namespace fedfm::secagg {

// Where a client stops answering (it sends nothing from that point on).
enum class DropPoint {
  kNever,
  kBeforeAdvertise,    // sends nothing at all
  kAfterAdvertise,     // round 0 only
  kAfterShareKeys,     // rounds 0-1: its pairwise masks must be removed via s_sk
  kAfterMaskedInput,   // rounds 0-2: its input counts, it does not unmask
};
const char* DropPointName(DropPoint point);

// Writes client `index`'s encoded input (config.vector_length words).
using InputFn = std::function<absl::Status(uint32_t index, std::span<uint32_t> encoded)>;

struct InProcessOptions {
  int server_threads = 1;
  int client_threads = 1;  // mask expansion threads per client
  // Client randomness: NewSeededRandom(HKDF(seed, client index)) when set
  // (reproducible), the system CSPRNG otherwise.
  std::optional<Key> client_seed;
};

enum RoundIndex { kAdvertiseRound = 0, kShareKeysRound = 1, kMaskedInputRound = 2, kUnmaskRound = 3 };

struct PhaseStats {
  int clients = 0;               // clients that produced a message in this round
  double client_ms_total = 0;    // summed over those clients
  double client_ms_max = 0;
  double server_ms = 0;          // Accept* of every message + Close*/Finish
};

struct InProcessReport {
  AggregateResult result;
  std::array<PhaseStats, 4> phases;
  std::vector<uint64_t> bytes_up;    // [n] serialized bytes each client sent
  std::vector<uint64_t> bytes_down;  // [n] serialized bytes each client received
  double mask_ms_total = 0;          // client time inside masking (round 2), summed
  uint64_t mask_bytes_total = 0;     // PRG bytes expanded by clients in round 2
};

// Runs the round. `drops` has one entry per client (config.num_clients).
// Errors: a client or server failure that is not a planned dropout, or the
// server aborting the round (FailedPrecondition naming the client and counts).
absl::StatusOr<InProcessReport> RunSecAggInProcess(const RoundConfig& config, const InputFn& input,
                                                   std::span<const DropPoint> drops,
                                                   const InProcessOptions& options = {});

}  // namespace fedfm::secagg

#endif  // FEDFM_AGGREGATION_SECAGG_IN_PROCESS_H_
