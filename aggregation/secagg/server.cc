#include "aggregation/secagg/server.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "aggregation/secagg/internal/keys.h"
#include "aggregation/secagg/internal/masking.h"
#include "aggregation/secagg/shamir.h"
#include "protocols/check.h"
#include "protocols/status_macros.h"

namespace fedfm::secagg {

struct SecAggServer::ClientRecord {
  bool advertised = false;  // its ClientKeys arrived
  bool in_a = false;        // sent NeighborKeys (A after pruning)
  bool shared = false;      // its ClientShares arrived
  bool in_u1 = false;       // sent RoutedShares (U1 after pruning)
  bool masked = false;      // its MaskedInput was added (U2)
  bool answered = false;    // its UnmaskResponse arrived (U3)
  Key cipher_public_key{};
  Key mask_public_key{};
  std::vector<uint32_t> key_neighbors;    // N(u) ∩ A, as listed in its NeighborKeys
  std::vector<EncryptedShare> outgoing;   // its sealed shares, ascending by recipient
  std::vector<uint32_t> peers;            // N(u) ∩ U1: hold its shares, and it theirs
  UnmaskRequest request;                  // what it was asked in round 3
  std::vector<ShamirShare> self_mask_shares;  // shares of its b, x = holder + 1
  std::vector<ShamirShare> mask_key_shares;   // shares of its s_sk
};

namespace {

const char* PhaseName(SecAggServer::Phase p) {
  switch (p) {
    case SecAggServer::Phase::kAdvertiseKeys: return "advertise keys (round 0)";
    case SecAggServer::Phase::kShareKeys: return "share keys (round 1)";
    case SecAggServer::Phase::kMaskedInput: return "masked input collection (round 2)";
    case SecAggServer::Phase::kUnmask: return "unmasking (round 3)";
    case SecAggServer::Phase::kDone: return "done";
    case SecAggServer::Phase::kAborted: return "aborted";
  }
  return "unknown";
}

void ZeroShares(std::vector<ShamirShare>& shares) {
  for (ShamirShare& s : shares) {
    SecureZero(std::span<uint8_t>(reinterpret_cast<uint8_t*>(s.y.data()), sizeof(s.y)));
  }
  shares.clear();
}

}  // namespace

SecAggServer::SecAggServer(RoundConfig config, ServerOptions options)
    : config_(std::move(config)), options_(options), clients_(config_.num_clients) {}

SecAggServer::~SecAggServer() {
  for (ClientRecord& c : clients_) {
    ZeroShares(c.self_mask_shares);
    ZeroShares(c.mask_key_shares);
  }
}

absl::StatusOr<std::unique_ptr<SecAggServer>> SecAggServer::Create(RoundConfig config,
                                                                   ServerOptions options) {
  if (!config.graph) return absl::InvalidArgumentError("secagg server: round config has no graph");
  if (config.graph->num_clients() != config.num_clients || config.threshold < 1 ||
      config.threshold > config.num_neighbors() || config.vector_length < 1) {
    return absl::InvalidArgumentError("secagg server: inconsistent round config");
  }
  return std::unique_ptr<SecAggServer>(new SecAggServer(std::move(config), options));
}

absl::Status SecAggServer::ExpectPhase(Phase expected, const char* call) const {
  if (phase_ == expected) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("secagg server: ", call, " during ",
                                                    PhaseName(phase_), ", expected ",
                                                    PhaseName(expected)));
}

absl::Status SecAggServer::CheckBinding(uint64_t round_id, uint32_t index,
                                        const char* message) const {
  if (round_id != config_.round_id) {
    return absl::InvalidArgumentError(absl::StrCat("secagg server: ", message, " from client ",
                                                   index, " is for round ", round_id,
                                                   ", this is round ", config_.round_id));
  }
  if (index >= static_cast<uint32_t>(config_.num_clients)) {
    return absl::InvalidArgumentError(absl::StrCat("secagg server: ", message, " from client ",
                                                   index, ", not one of the round's ",
                                                   config_.num_clients, " clients"));
  }
  return absl::OkStatus();
}

absl::Status SecAggServer::Abort(absl::Status status) {
  if (!status.ok()) {
    phase_ = Phase::kAborted;
    sum_.clear();
    sum_.shrink_to_fit();
  }
  return status;
}

void SecAggServer::PruneBelowThreshold(std::vector<bool>& members) const {
  bool changed = true;
  while (changed) {
    changed = false;
    for (int u = 0; u < config_.num_clients; ++u) {
      if (!members[u]) continue;
      int live = 0;
      for (uint32_t v : config_.graph->Neighbors(u)) live += members[v] ? 1 : 0;
      if (live < config_.threshold) {
        members[u] = false;
        changed = true;
      }
    }
  }
}

// --- Round 0 ------------------------------------------------------------------------

absl::Status SecAggServer::AcceptKeys(const ClientKeys& m) {
  FEDFM_RETURN_IF_ERROR(ExpectPhase(Phase::kAdvertiseKeys, "AcceptKeys"));
  FEDFM_RETURN_IF_ERROR(CheckBinding(m.round_id, m.index, "ClientKeys"));
  ClientRecord& c = clients_[m.index];
  if (c.advertised) {
    return absl::AlreadyExistsError(
        absl::StrCat("secagg server: duplicate ClientKeys from client ", m.index));
  }
  for (const Key* key : {&m.cipher_public_key, &m.mask_public_key}) {
    absl::Status valid = CheckX25519PublicKey(*key);
    if (!valid.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "secagg server: ClientKeys from client ", m.index, ": ", valid.message()));
    }
  }
  c.advertised = true;
  c.cipher_public_key = m.cipher_public_key;
  c.mask_public_key = m.mask_public_key;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<NeighborKeys>> SecAggServer::CloseAdvertise() {
  FEDFM_RETURN_IF_ERROR(ExpectPhase(Phase::kAdvertiseKeys, "CloseAdvertise"));
  std::vector<bool> members(config_.num_clients);
  int advertised = 0;
  for (int u = 0; u < config_.num_clients; ++u) {
    members[u] = clients_[u].advertised;
    advertised += members[u] ? 1 : 0;
  }
  PruneBelowThreshold(members);

  std::vector<NeighborKeys> out;
  for (int u = 0; u < config_.num_clients; ++u) {
    ClientRecord& c = clients_[u];
    c.in_a = members[u];
    if (!c.in_a) continue;
    NeighborKeys msg;
    msg.round_id = config_.round_id;
    msg.index = u;
    for (uint32_t v : config_.graph->Neighbors(u)) {
      if (!members[v]) continue;
      c.key_neighbors.push_back(v);
      msg.neighbors.push_back({v, clients_[v].cipher_public_key, clients_[v].mask_public_key});
    }
    out.push_back(std::move(msg));
  }
  if (out.empty()) {
    return Abort(absl::FailedPreconditionError(absl::StrCat(
        "secagg server: round aborted after advertise keys: ", advertised, " of ",
        config_.num_clients, " clients advertised and none has t = ", config_.threshold,
        " neighbours among them")));
  }
  phase_ = Phase::kShareKeys;
  return out;
}

// --- Round 1 ------------------------------------------------------------------------

absl::Status SecAggServer::AcceptShares(const ClientShares& m) {
  FEDFM_RETURN_IF_ERROR(ExpectPhase(Phase::kShareKeys, "AcceptShares"));
  FEDFM_RETURN_IF_ERROR(CheckBinding(m.round_id, m.index, "ClientShares"));
  ClientRecord& c = clients_[m.index];
  if (!c.in_a) {
    return absl::FailedPreconditionError(absl::StrCat(
        "secagg server: ClientShares from client ", m.index, ", which is not in this round's "
        "share-keys phase (it did not advertise keys or was excluded)"));
  }
  if (c.shared) {
    return absl::AlreadyExistsError(
        absl::StrCat("secagg server: duplicate ClientShares from client ", m.index));
  }
  if (m.shares.size() != c.key_neighbors.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "secagg server: client ", m.index, " sent ", m.shares.size(), " shares, expected one for "
        "each of its ", c.key_neighbors.size(), " neighbours"));
  }
  for (size_t i = 0; i < m.shares.size(); ++i) {
    if (m.shares[i].peer != c.key_neighbors[i]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "secagg server: client ", m.index, " sent a share for client ", m.shares[i].peer,
          " where one for neighbour ", c.key_neighbors[i], " was expected (ascending order)"));
    }
    if (m.shares[i].ciphertext.size() != kShareCiphertextBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "secagg server: client ", m.index, " sent a share for client ", m.shares[i].peer,
          " of ", m.shares[i].ciphertext.size(), " bytes, expected ", kShareCiphertextBytes));
    }
  }
  c.shared = true;
  c.outgoing = m.shares;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<RoutedShares>> SecAggServer::CloseShareKeys() {
  FEDFM_RETURN_IF_ERROR(ExpectPhase(Phase::kShareKeys, "CloseShareKeys"));
  std::vector<bool> members(config_.num_clients);
  int shared = 0;
  for (int u = 0; u < config_.num_clients; ++u) {
    members[u] = clients_[u].shared;
    shared += members[u] ? 1 : 0;
  }
  PruneBelowThreshold(members);
  for (int u = 0; u < config_.num_clients; ++u) clients_[u].in_u1 = members[u];

  std::vector<RoutedShares> out;
  for (int v = 0; v < config_.num_clients; ++v) {
    ClientRecord& c = clients_[v];
    if (!c.in_u1) continue;
    RoutedShares msg;
    msg.round_id = config_.round_id;
    msg.index = v;
    for (uint32_t u : config_.graph->Neighbors(v)) {
      if (!members[u]) continue;
      const std::vector<EncryptedShare>& from_u = clients_[u].outgoing;
      auto it = std::lower_bound(
          from_u.begin(), from_u.end(), static_cast<uint32_t>(v),
          [](const EncryptedShare& s, uint32_t to) { return s.peer < to; });
      // u listed v in its NeighborKeys (both in A and neighbours), and
      // AcceptShares checked u sent one share per listed neighbour.
      FEDFM_CHECK(it != from_u.end() && it->peer == static_cast<uint32_t>(v));
      c.peers.push_back(u);
      msg.shares.push_back({u, it->ciphertext});
    }
    out.push_back(std::move(msg));
  }
  for (ClientRecord& c : clients_) {
    c.outgoing.clear();
    c.outgoing.shrink_to_fit();
  }
  if (out.empty()) {
    return Abort(absl::FailedPreconditionError(absl::StrCat(
        "secagg server: round aborted after share keys: ", shared, " clients shared keys and "
        "none has t = ", config_.threshold, " neighbours among them")));
  }
  sum_.assign(config_.vector_length, 0);
  phase_ = Phase::kMaskedInput;
  return out;
}

// --- Round 2 ------------------------------------------------------------------------

absl::Status SecAggServer::AcceptMaskedInput(const MaskedInput& m) {
  FEDFM_RETURN_IF_ERROR(ExpectPhase(Phase::kMaskedInput, "AcceptMaskedInput"));
  FEDFM_RETURN_IF_ERROR(CheckBinding(m.round_id, m.index, "MaskedInput"));
  ClientRecord& c = clients_[m.index];
  if (!c.in_u1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "secagg server: MaskedInput from client ", m.index, ", which was not sent shares in this "
        "round (it did not share keys or was excluded)"));
  }
  if (c.masked) {
    return absl::AlreadyExistsError(
        absl::StrCat("secagg server: duplicate MaskedInput from client ", m.index));
  }
  if (static_cast<int64_t>(m.masked.size()) != config_.vector_length) {
    return absl::InvalidArgumentError(absl::StrCat(
        "secagg server: MaskedInput from client ", m.index, " has ", m.masked.size(),
        " words, the round has ", config_.vector_length));
  }
  uint32_t* sum = sum_.data();
  const uint32_t* y = m.masked.data();
  for (size_t i = 0, n = sum_.size(); i < n; ++i) sum[i] += y[i];
  c.masked = true;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<UnmaskRequest>> SecAggServer::CloseMaskedInput() {
  FEDFM_RETURN_IF_ERROR(ExpectPhase(Phase::kMaskedInput, "CloseMaskedInput"));
  const int t = config_.threshold;
  int included = 0;
  for (int u = 0; u < config_.num_clients; ++u) {
    const ClientRecord& c = clients_[u];
    if (!c.in_u1) continue;
    included += c.masked ? 1 : 0;
    int live = 0;
    for (uint32_t v : c.peers) live += clients_[v].masked ? 1 : 0;
    if (live < t) {
      return Abort(absl::FailedPreconditionError(absl::StrCat(
          "secagg server: round aborted after masked input: client ", u,
          c.masked ? " (input received)" : " (dropped after sharing keys)", " has only ", live,
          " of its ", c.peers.size(), " peers with masked inputs, threshold t = ", t, "; its ",
          c.masked ? "self mask" : "pairwise masks", " could not be removed")));
    }
  }
  if (included == 0) {
    return Abort(absl::FailedPreconditionError(
        "secagg server: round aborted after masked input: no masked input arrived"));
  }
  std::vector<UnmaskRequest> out;
  for (int v = 0; v < config_.num_clients; ++v) {
    ClientRecord& c = clients_[v];
    if (!c.masked) continue;
    c.request.round_id = config_.round_id;
    c.request.index = v;
    for (uint32_t u : c.peers) {
      (clients_[u].masked ? c.request.survived : c.request.dropped).push_back(u);
    }
    out.push_back(c.request);
  }
  phase_ = Phase::kUnmask;
  return out;
}

// --- Round 3 ------------------------------------------------------------------------

absl::Status SecAggServer::AcceptUnmask(const UnmaskResponse& m) {
  FEDFM_RETURN_IF_ERROR(ExpectPhase(Phase::kUnmask, "AcceptUnmask"));
  FEDFM_RETURN_IF_ERROR(CheckBinding(m.round_id, m.index, "UnmaskResponse"));
  ClientRecord& c = clients_[m.index];
  if (!c.masked) {
    return absl::FailedPreconditionError(absl::StrCat(
        "secagg server: UnmaskResponse from client ", m.index,
        ", whose masked input is not part of the sum"));
  }
  if (c.answered) {
    return absl::AlreadyExistsError(
        absl::StrCat("secagg server: duplicate UnmaskResponse from client ", m.index));
  }
  for (const RevealedShare& b : m.self_mask_shares) {
    for (const RevealedShare& s : m.mask_key_shares) {
      if (b.owner == s.owner) {
        return absl::InvalidArgumentError(absl::StrCat(
            "secagg server: UnmaskResponse from client ", m.index,
            " carries both the self-mask share and the mask-key share of client ", b.owner));
      }
    }
  }
  auto matches = [](const std::vector<RevealedShare>& got, const std::vector<uint32_t>& want) {
    if (got.size() != want.size()) return false;
    for (size_t i = 0; i < got.size(); ++i) {
      if (got[i].owner != want[i]) return false;
    }
    return true;
  };
  if (!matches(m.self_mask_shares, c.request.survived) ||
      !matches(m.mask_key_shares, c.request.dropped)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "secagg server: UnmaskResponse from client ", m.index, " does not carry exactly the ",
        c.request.survived.size(), " self-mask and ", c.request.dropped.size(),
        " mask-key shares it was asked for"));
  }
  const uint32_t x = m.index + 1;
  for (const RevealedShare& s : m.self_mask_shares) {
    clients_[s.owner].self_mask_shares.push_back({x, s.value});
  }
  for (const RevealedShare& s : m.mask_key_shares) {
    clients_[s.owner].mask_key_shares.push_back({x, s.value});
  }
  c.answered = true;
  return absl::OkStatus();
}

absl::StatusOr<AggregateResult> SecAggServer::Finish() {
  FEDFM_RETURN_IF_ERROR(ExpectPhase(Phase::kUnmask, "Finish"));
  const int t = config_.threshold;
  AggregateResult result;
  std::vector<internal::MaskTerm> terms;

  for (int u = 0; u < config_.num_clients; ++u) {
    ClientRecord& c = clients_[u];
    if (!c.in_u1) continue;
    const bool included = c.masked;
    std::vector<ShamirShare>& shares = included ? c.self_mask_shares : c.mask_key_shares;
    if (static_cast<int>(shares.size()) < t) {
      int survivors = 0;
      for (uint32_t v : c.peers) survivors += clients_[v].masked ? 1 : 0;
      return Abort(absl::FailedPreconditionError(absl::StrCat(
          "secagg server: round aborted in unmasking: client ", u, " needs t = ", t, " shares of "
          "its ", included ? "self-mask seed" : "mask key", ", but only ", shares.size(),
          " of its ", survivors, " surviving peers answered")));
    }
    absl::StatusOr<Key> secret = ShamirReconstruct(shares, t);
    ZeroShares(shares);
    if (!secret.ok()) {
      return Abort(absl::DataLossError(absl::StrCat("secagg server: client ", u, "'s ",
                                                    included ? "self-mask seed" : "mask key",
                                                    ": ", secret.status().message())));
    }
    if (included) {
      result.included.push_back(u);
      terms.push_back({*secret, -1});
      SecureZero(*secret);
      continue;
    }
    // Dropped after sharing keys: its pairwise masks are in its surviving
    // peers' inputs. Check the key against the one it advertised first.
    result.dropped_masked.push_back(u);
    absl::StatusOr<Key> public_key = X25519PublicKey(*secret);
    if (!public_key.ok() || !ConstantTimeEquals(*public_key, c.mask_public_key)) {
      SecureZero(*secret);
      return Abort(absl::DataLossError(absl::StrCat(
          "secagg server: the reconstructed mask key of client ", u,
          " does not match the public key it advertised (inconsistent shares)")));
    }
    for (uint32_t v : c.peers) {
      if (!clients_[v].masked) continue;
      absl::StatusOr<Key> seed = internal::PairwiseMaskSeed(
          *secret, clients_[v].mask_public_key, config_.round_id, u, v);
      if (!seed.ok()) {
        SecureZero(*secret);
        return Abort(seed.status());
      }
      // v added PairwiseSign(v, u) * PRG(seed); take it out.
      terms.push_back({*seed, -internal::PairwiseSign(v, u)});
    }
    SecureZero(*secret);
  }

  absl::Status status = internal::ApplyMasks(terms, sum_, options_.num_threads);
  for (internal::MaskTerm& term : terms) SecureZero(term.seed);
  if (!status.ok()) return Abort(status);
  result.num_masks_removed = static_cast<int>(terms.size());
  result.sum = std::move(sum_);
  sum_.clear();
  phase_ = Phase::kDone;
  return result;
}

}  // namespace fedfm::secagg
