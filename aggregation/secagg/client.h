// The client side of SecAgg+ (Bell et al. 2020, on Bonawitz et al. 2017) as
// a transport-free state machine: each method consumes the server's message
// of the previous round and returns the client's message for the next one.
//
//   AdvertiseKeys()        round 0: two fresh X25519 key pairs, c (share
//                          encryption) and s (pairwise masks)
//   ShareKeys(keys)        round 1: draws the self-mask seed b, Shamir-shares b
//                          and s_sk t-of-m among the m neighbours that
//                          advertised, seals each holder's two shares with
//                          AES-256-GCM under KDF(X25519(c_sk, c_pk_v))
//   MaskInput(shares, x)   round 2: opens the shares it holds; returns
//                          y = x + PRG(b) + sum_v +-PRG(KDF(X25519(s_sk, s_pk_v)))
//                          over the peers v whose shares arrived (+ when the
//                          client's index is smaller)
//   Unmask(request)        round 3: reveals its share of b for survived peers
//                          and of s_sk for dropped peers, never both for one
//                          peer, and answers only once
//
// Any refused message (wrong round, recipient or phase, a peer outside the
// graph, a duplicate, a share that fails authentication, fewer than t peers
// left) returns an error and aborts the client for the round: every later
// call fails with FailedPrecondition. The server then treats it as dropped.
// Not thread-safe: one round, one caller.
#ifndef FEDFM_AGGREGATION_SECAGG_CLIENT_H_
#define FEDFM_AGGREGATION_SECAGG_CLIENT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "aggregation/secagg/crypto.h"
#include "aggregation/secagg/messages.h"
#include "aggregation/secagg/round_config.h"

namespace fedfm::secagg {

struct ClientOptions {
  int num_threads = 1;  // threads for mask expansion in MaskInput
};

class SecAggClient {
 public:
  enum class State { kStart, kAdvertised, kShared, kMasked, kDone, kAborted };

  // `rng` (keys, seeds, Shamir coefficients, nonces) must outlive the client.
  // InvalidArgument if `index` is not a client of `config`.
  static absl::StatusOr<std::unique_ptr<SecAggClient>> Create(RoundConfig config, uint32_t index,
                                                              RandomSource* rng,
                                                              ClientOptions options = {});
  // Overwrites the round's secrets.
  ~SecAggClient();
  SecAggClient(const SecAggClient&) = delete;
  SecAggClient& operator=(const SecAggClient&) = delete;

  absl::StatusOr<ClientKeys> AdvertiseKeys();
  absl::StatusOr<ClientShares> ShareKeys(const NeighborKeys& keys);
  // `encoded_input`: config.vector_length words (see FixedPointCodec).
  absl::StatusOr<MaskedInput> MaskInput(const RoutedShares& shares,
                                        std::span<const uint32_t> encoded_input);
  absl::StatusOr<UnmaskResponse> Unmask(const UnmaskRequest& request);

  State state() const { return state_; }
  uint32_t index() const { return index_; }

 private:
  struct Peer {
    Key cipher_public_key;
    Key mask_public_key;
    Key share_key;                 // AES-256-GCM key for shares between us
    bool holds_shares = false;     // its shares reached us in round 1
    ShareValue self_mask_share{};  // our share of its b
    ShareValue mask_key_share{};   // our share of its s_sk
  };

  SecAggClient(RoundConfig config, uint32_t index, RandomSource* rng, ClientOptions options)
      : config_(std::move(config)), index_(index), rng_(rng), options_(options) {}

  absl::Status ExpectState(State expected, const char* call) const;
  absl::Status CheckBinding(uint64_t round_id, uint32_t index, const char* message) const;
  // Aborts the client for the round when `status` is an error.
  absl::Status Abort(absl::Status status);

  RoundConfig config_;
  uint32_t index_;
  RandomSource* rng_;
  ClientOptions options_;
  State state_ = State::kStart;

  X25519KeyPair cipher_keys_{};
  X25519KeyPair mask_keys_{};
  Key self_mask_seed_{};
  std::map<uint32_t, Peer> peers_;  // neighbours that advertised keys
};

}  // namespace fedfm::secagg

#endif  // FEDFM_AGGREGATION_SECAGG_CLIENT_H_
