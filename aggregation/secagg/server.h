// The server side of SecAgg+ as a transport-free state machine. For each
// round it collects the clients' messages (Accept*), then closes the round
// (Close*), which returns the messages to send to each continuing client:
//
//   round 0  AcceptKeys*          -> CloseAdvertise()   NeighborKeys per client
//   round 1  AcceptShares*        -> CloseShareKeys()   RoutedShares per client
//   round 2  AcceptMaskedInput*   -> CloseMaskedInput() UnmaskRequest per client
//   round 3  AcceptUnmask*        -> Finish()           the sum
//
// A client whose message does not arrive before its round is closed has
// dropped out at that round; the protocol recovers from dropouts at any
// round as long as every client whose masks must be removed keeps at least t
// surviving neighbours holding its shares, and aborts with FailedPrecondition
// naming the client and the counts otherwise. Clients left with fewer than t
// live neighbours are excluded early (before they mask anything) so that
// they cannot make the round fail later.
//
// Sets (Bonawitz et al. notation): A = advertised keys, U1 = shared keys,
// U2 = masked input received (the clients whose inputs are summed),
// U3 = answered the unmask request. The server keeps only the running sum of
// masked inputs: it never holds an individual unmasked update, and it reveals
// for each client either its self-mask seed b (if in U2) or its mask key s_sk
// (if in U1 \ U2), never both.
//
// Accept* return InvalidArgument for a malformed message or one bound to
// another round or client, AlreadyExists for a duplicate, FailedPrecondition
// when the round is not open or the client is not (or no longer) a
// participant; a refused message changes nothing. Not thread-safe: callers
// serialise calls (the coordinator's round engine does).
#ifndef FEDFM_AGGREGATION_SECAGG_SERVER_H_
#define FEDFM_AGGREGATION_SECAGG_SERVER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "aggregation/secagg/messages.h"
#include "aggregation/secagg/round_config.h"

namespace fedfm::secagg {

struct ServerOptions {
  int num_threads = 1;  // threads for mask regeneration in Finish()
};

struct AggregateResult {
  std::vector<uint32_t> sum;             // sum of the included clients' encoded inputs mod 2^32
  std::vector<uint32_t> included;        // U2, ascending
  std::vector<uint32_t> dropped_masked;  // U1 \ U2: pairwise masks removed via s_sk, ascending
  int num_masks_removed = 0;             // PRG expansions in Finish()
};

class SecAggServer {
 public:
  enum class Phase { kAdvertiseKeys, kShareKeys, kMaskedInput, kUnmask, kDone, kAborted };

  static absl::StatusOr<std::unique_ptr<SecAggServer>> Create(RoundConfig config,
                                                              ServerOptions options = {});
  ~SecAggServer();
  SecAggServer(const SecAggServer&) = delete;
  SecAggServer& operator=(const SecAggServer&) = delete;

  // Round 0. InvalidArgument also for a low-order public key.
  absl::Status AcceptKeys(const ClientKeys& message);
  // Closes round 0: one NeighborKeys for each client that advertised and has
  // at least t neighbours that advertised too (iteratively), ascending.
  // FailedPrecondition (and the round aborts) if none is left.
  absl::StatusOr<std::vector<NeighborKeys>> CloseAdvertise();

  // Round 1: accepted only from clients sent NeighborKeys; must carry exactly
  // one 108-byte share for each neighbour listed there.
  absl::Status AcceptShares(const ClientShares& message);
  // Closes round 1: one RoutedShares for each client that shared keys and
  // keeps at least t neighbours that did (iteratively), ascending.
  absl::StatusOr<std::vector<RoutedShares>> CloseShareKeys();

  // Round 2: adds the masked input to the running sum.
  absl::Status AcceptMaskedInput(const MaskedInput& message);
  // Closes round 2: one UnmaskRequest for each client in U2. FailedPrecondition
  // (abort) if some client whose masks must be removed has fewer than t
  // neighbours in U2.
  absl::StatusOr<std::vector<UnmaskRequest>> CloseMaskedInput();

  // Round 3: the response must carry exactly the shares its request asked for.
  absl::Status AcceptUnmask(const UnmaskResponse& message);
  // Reconstructs b for U2 and s_sk for U1 \ U2, removes all masks and returns
  // the sum. FailedPrecondition (abort) naming the client and the counts if
  // fewer than t shares of some needed secret arrived; DataLoss if shares are
  // inconsistent (a reconstructed s_sk does not match its public key, or an
  // invalid encoding).
  absl::StatusOr<AggregateResult> Finish();

  Phase phase() const { return phase_; }
  const RoundConfig& config() const { return config_; }

 private:
  struct ClientRecord;
  SecAggServer(RoundConfig config, ServerOptions options);

  absl::Status ExpectPhase(Phase expected, const char* call) const;
  absl::Status CheckBinding(uint64_t round_id, uint32_t index, const char* message) const;
  // Repeatedly removes members with fewer than t neighbours among `members`.
  void PruneBelowThreshold(std::vector<bool>& members) const;
  absl::Status Abort(absl::Status status);

  RoundConfig config_;
  ServerOptions options_;
  Phase phase_ = Phase::kAdvertiseKeys;
  std::vector<ClientRecord> clients_;  // [n]
  std::vector<uint32_t> sum_;          // running sum of masked inputs, [P]
};

}  // namespace fedfm::secagg

#endif  // FEDFM_AGGREGATION_SECAGG_SERVER_H_
