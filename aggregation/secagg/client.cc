#include "aggregation/secagg/client.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "aggregation/secagg/internal/keys.h"
#include "aggregation/secagg/internal/masking.h"
#include "aggregation/secagg/shamir.h"
#include "protocols/status_macros.h"

namespace fedfm::secagg {
namespace {

const char* StateName(SecAggClient::State s) {
  switch (s) {
    case SecAggClient::State::kStart: return "start";
    case SecAggClient::State::kAdvertised: return "keys advertised";
    case SecAggClient::State::kShared: return "keys shared";
    case SecAggClient::State::kMasked: return "masked input sent";
    case SecAggClient::State::kDone: return "unmask answered";
    case SecAggClient::State::kAborted: return "aborted";
  }
  return "unknown";
}

bool StrictlyAscending(const std::vector<uint32_t>& v) {
  return std::adjacent_find(v.begin(), v.end(),
                            [](uint32_t a, uint32_t b) { return a >= b; }) == v.end();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SecAggClient>> SecAggClient::Create(RoundConfig config,
                                                                   uint32_t index,
                                                                   RandomSource* rng,
                                                                   ClientOptions options) {
  if (!config.graph) return absl::InvalidArgumentError("secagg client: round config has no graph");
  if (index >= static_cast<uint32_t>(config.num_clients)) {
    return absl::InvalidArgumentError(absl::StrCat("secagg client: index ", index,
                                                   " is not one of the round's ",
                                                   config.num_clients, " clients"));
  }
  if (rng == nullptr) return absl::InvalidArgumentError("secagg client: no random source");
  return std::unique_ptr<SecAggClient>(new SecAggClient(std::move(config), index, rng, options));
}

SecAggClient::~SecAggClient() {
  SecureZero(cipher_keys_.private_key);
  SecureZero(mask_keys_.private_key);
  SecureZero(self_mask_seed_);
  for (auto& [index, peer] : peers_) SecureZero(peer.share_key);
}

absl::Status SecAggClient::ExpectState(State expected, const char* call) const {
  if (state_ == expected) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("secagg client ", index_, ": ", call, " in state '", StateName(state_),
                   "', expected '", StateName(expected), "'",
                   state_ == State::kDone ? " (it answers one unmask request per round)" : ""));
}

absl::Status SecAggClient::CheckBinding(uint64_t round_id, uint32_t index,
                                        const char* message) const {
  if (round_id != config_.round_id) {
    return absl::InvalidArgumentError(absl::StrCat("secagg client ", index_, ": ", message,
                                                   " is for round ", round_id,
                                                   ", this is round ", config_.round_id));
  }
  if (index != index_) {
    return absl::InvalidArgumentError(absl::StrCat("secagg client ", index_, ": ", message,
                                                   " is addressed to client ", index));
  }
  return absl::OkStatus();
}

absl::Status SecAggClient::Abort(absl::Status status) {
  if (!status.ok()) state_ = State::kAborted;
  return status;
}

absl::StatusOr<ClientKeys> SecAggClient::AdvertiseKeys() {
  FEDFM_RETURN_IF_ERROR(ExpectState(State::kStart, "AdvertiseKeys"));
  absl::StatusOr<X25519KeyPair> c = GenerateX25519KeyPair(*rng_);
  if (!c.ok()) return Abort(c.status());
  absl::StatusOr<X25519KeyPair> s = GenerateX25519KeyPair(*rng_);
  if (!s.ok()) return Abort(s.status());
  cipher_keys_ = *c;
  mask_keys_ = *s;
  SecureZero(c->private_key);
  SecureZero(s->private_key);
  state_ = State::kAdvertised;

  ClientKeys out;
  out.round_id = config_.round_id;
  out.index = index_;
  out.cipher_public_key = cipher_keys_.public_key;
  out.mask_public_key = mask_keys_.public_key;
  return out;
}

absl::StatusOr<ClientShares> SecAggClient::ShareKeys(const NeighborKeys& keys) {
  FEDFM_RETURN_IF_ERROR(ExpectState(State::kAdvertised, "ShareKeys"));
  FEDFM_RETURN_IF_ERROR(Abort(CheckBinding(keys.round_id, keys.index, "NeighborKeys")));
  const int t = config_.threshold;
  uint32_t previous = 0;
  for (size_t i = 0; i < keys.neighbors.size(); ++i) {
    const PeerKeys& p = keys.neighbors[i];
    if (i > 0 && p.index <= previous) {
      return Abort(absl::InvalidArgumentError(absl::StrCat(
          "secagg client ", index_, ": NeighborKeys lists client ", p.index,
          " out of order or twice")));
    }
    previous = p.index;
    if (!config_.graph->AreNeighbors(index_, p.index)) {
      return Abort(absl::InvalidArgumentError(
          absl::StrCat("secagg client ", index_, ": NeighborKeys lists client ", p.index,
                       ", which is not its neighbour in the round's graph")));
    }
  }
  if (static_cast<int>(keys.neighbors.size()) < t) {
    return Abort(absl::FailedPreconditionError(absl::StrCat(
        "secagg client ", index_, ": only ", keys.neighbors.size(), " of its ",
        config_.num_neighbors(), " neighbours advertised keys; threshold t = ", t)));
  }

  peers_.clear();
  std::vector<uint32_t> xs;
  for (const PeerKeys& p : keys.neighbors) {
    Peer peer;
    peer.cipher_public_key = p.cipher_public_key;
    peer.mask_public_key = p.mask_public_key;
    absl::StatusOr<Key> share_key = internal::ShareKey(
        cipher_keys_.private_key, p.cipher_public_key, config_.round_id, index_, p.index);
    if (!share_key.ok()) {
      return Abort(absl::InvalidArgumentError(absl::StrCat(
          "secagg client ", index_, ": cipher key of neighbour ", p.index, ": ",
          share_key.status().message())));
    }
    peer.share_key = *share_key;
    peers_.emplace(p.index, peer);
    xs.push_back(p.index + 1);
  }

  absl::StatusOr<Key> b = rng_->NewKey();
  if (!b.ok()) return Abort(b.status());
  self_mask_seed_ = *b;
  SecureZero(*b);
  absl::StatusOr<std::vector<ShamirShare>> b_shares = ShamirSplit(self_mask_seed_, t, xs, *rng_);
  if (!b_shares.ok()) return Abort(b_shares.status());
  absl::StatusOr<std::vector<ShamirShare>> s_shares =
      ShamirSplit(mask_keys_.private_key, t, xs, *rng_);
  if (!s_shares.ok()) return Abort(s_shares.status());

  ClientShares out;
  out.round_id = config_.round_id;
  out.index = index_;
  out.shares.reserve(keys.neighbors.size());
  uint8_t plaintext[kSharePlaintextBytes];
  for (size_t i = 0; i < keys.neighbors.size(); ++i) {
    const uint32_t v = keys.neighbors[i].index;
    EncodeShareValue((*b_shares)[i].y, plaintext);
    EncodeShareValue((*s_shares)[i].y, plaintext + kShamirShareBytes);
    absl::StatusOr<Bytes> sealed =
        AesGcmSeal(peers_.at(v).share_key, plaintext,
                   internal::ShareAssociatedData(config_.round_id, index_, v), *rng_);
    SecureZero(plaintext);
    if (!sealed.ok()) return Abort(sealed.status());
    out.shares.push_back(EncryptedShare{v, *std::move(sealed)});
  }
  for (auto* shares : {&*b_shares, &*s_shares}) {
    for (ShamirShare& s : *shares) SecureZero(std::span<uint8_t>(
        reinterpret_cast<uint8_t*>(s.y.data()), sizeof(s.y)));
  }
  state_ = State::kShared;
  return out;
}

absl::StatusOr<MaskedInput> SecAggClient::MaskInput(const RoutedShares& shares,
                                                    std::span<const uint32_t> encoded_input) {
  FEDFM_RETURN_IF_ERROR(ExpectState(State::kShared, "MaskInput"));
  if (static_cast<int64_t>(encoded_input.size()) != config_.vector_length) {
    // The caller's mistake, not the server's: the client stays usable.
    return absl::InvalidArgumentError(absl::StrCat("secagg client ", index_, ": input has ",
                                                   encoded_input.size(), " words, the round has ",
                                                   config_.vector_length));
  }
  FEDFM_RETURN_IF_ERROR(Abort(CheckBinding(shares.round_id, shares.index, "RoutedShares")));

  int holders = 0;
  for (const EncryptedShare& share : shares.shares) {
    auto it = peers_.find(share.peer);
    if (it == peers_.end()) {
      return Abort(absl::InvalidArgumentError(
          absl::StrCat("secagg client ", index_, ": RoutedShares carries a share from client ",
                       share.peer, ", which is not one of its neighbours with keys")));
    }
    Peer& peer = it->second;
    if (peer.holds_shares) {
      return Abort(absl::InvalidArgumentError(absl::StrCat(
          "secagg client ", index_, ": duplicate share from client ", share.peer)));
    }
    absl::StatusOr<Bytes> plaintext =
        AesGcmOpen(peer.share_key, share.ciphertext,
                   internal::ShareAssociatedData(config_.round_id, share.peer, index_));
    if (!plaintext.ok() || plaintext->size() != kSharePlaintextBytes) {
      return Abort(absl::PermissionDeniedError(absl::StrCat(
          "secagg client ", index_, ": the share from client ", share.peer,
          " failed authentication (tampered, replayed from another round or pair, or not 108 "
          "bytes)")));
    }
    absl::StatusOr<ShareValue> b = DecodeShareValue(plaintext->data());
    absl::StatusOr<ShareValue> s = DecodeShareValue(plaintext->data() + kShamirShareBytes);
    SecureZero(*plaintext);
    if (!b.ok() || !s.ok()) {
      return Abort(absl::InvalidArgumentError(absl::StrCat(
          "secagg client ", index_, ": the share from client ", share.peer,
          " holds values outside the field")));
    }
    peer.self_mask_share = *b;
    peer.mask_key_share = *s;
    peer.holds_shares = true;
    ++holders;
  }
  if (holders < config_.threshold) {
    return Abort(absl::FailedPreconditionError(absl::StrCat(
        "secagg client ", index_, ": shares arrived from only ", holders, " of its ",
        peers_.size(), " neighbours with keys; threshold t = ", config_.threshold)));
  }

  // Self mask first, then one pairwise mask per peer holding our shares.
  std::vector<internal::MaskTerm> terms;
  terms.reserve(holders + 1);
  terms.push_back({self_mask_seed_, +1});
  for (const auto& [v, peer] : peers_) {
    if (!peer.holds_shares) continue;
    absl::StatusOr<Key> seed = internal::PairwiseMaskSeed(
        mask_keys_.private_key, peer.mask_public_key, config_.round_id, index_, v);
    if (!seed.ok()) {
      return Abort(absl::InvalidArgumentError(absl::StrCat(
          "secagg client ", index_, ": mask key of neighbour ", v, ": ", seed.status().message())));
    }
    terms.push_back({*seed, internal::PairwiseSign(index_, v)});
  }

  MaskedInput out;
  out.round_id = config_.round_id;
  out.index = index_;
  out.masked.assign(encoded_input.begin(), encoded_input.end());
  absl::Status status = internal::ApplyMasks(terms, out.masked, options_.num_threads);
  for (internal::MaskTerm& term : terms) SecureZero(term.seed);
  if (!status.ok()) return Abort(status);
  state_ = State::kMasked;
  return out;
}

absl::StatusOr<UnmaskResponse> SecAggClient::Unmask(const UnmaskRequest& request) {
  FEDFM_RETURN_IF_ERROR(ExpectState(State::kMasked, "Unmask"));
  FEDFM_RETURN_IF_ERROR(Abort(CheckBinding(request.round_id, request.index, "UnmaskRequest")));
  if (!StrictlyAscending(request.survived) || !StrictlyAscending(request.dropped)) {
    return Abort(absl::InvalidArgumentError(absl::StrCat(
        "secagg client ", index_, ": UnmaskRequest lists must be ascending without repeats")));
  }
  // Never both shares of one peer: with b and s_sk the server could unmask
  // that peer's individual input.
  for (uint32_t v : request.survived) {
    if (std::binary_search(request.dropped.begin(), request.dropped.end(), v)) {
      return Abort(absl::PermissionDeniedError(absl::StrCat(
          "secagg client ", index_, ": UnmaskRequest asks for both the self-mask share and the "
          "mask-key share of client ", v, "; refused")));
    }
  }
  size_t holders = 0;
  for (const auto& [v, peer] : peers_) holders += peer.holds_shares ? 1 : 0;
  for (const std::vector<uint32_t>* list : {&request.survived, &request.dropped}) {
    for (uint32_t v : *list) {
      auto it = peers_.find(v);
      if (it == peers_.end() || !it->second.holds_shares) {
        return Abort(absl::InvalidArgumentError(absl::StrCat(
            "secagg client ", index_, ": UnmaskRequest names client ", v,
            ", whose shares it does not hold")));
      }
    }
  }
  if (request.survived.size() + request.dropped.size() != holders) {
    return Abort(absl::InvalidArgumentError(absl::StrCat(
        "secagg client ", index_, ": UnmaskRequest accounts for ",
        request.survived.size() + request.dropped.size(), " of its ", holders,
        " peers; every peer must be listed as survived or dropped")));
  }
  if (static_cast<int>(request.survived.size()) < config_.threshold) {
    return Abort(absl::FailedPreconditionError(absl::StrCat(
        "secagg client ", index_, ": only ", request.survived.size(), " of its ", holders,
        " peers survived; threshold t = ", config_.threshold, " (its own self mask could not be "
        "removed)")));
  }

  UnmaskResponse out;
  out.round_id = config_.round_id;
  out.index = index_;
  for (uint32_t v : request.survived) {
    out.self_mask_shares.push_back({v, peers_.at(v).self_mask_share});
  }
  for (uint32_t v : request.dropped) {
    out.mask_key_shares.push_back({v, peers_.at(v).mask_key_share});
  }
  state_ = State::kDone;
  return out;
}

}  // namespace fedfm::secagg
