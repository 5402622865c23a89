// The messages of one SecAgg+ round, as plain structs with a compact byte
// serialization (the payload the gRPC layer carries; the simulation passes
// the same bytes in process).
//
//   round 0  AdvertiseKeys          client -> server   ClientKeys
//                                   server -> client   NeighborKeys
//   round 1  ShareKeys              client -> server   ClientShares
//                                   server -> client   RoutedShares
//   round 2  MaskedInputCollection  client -> server   MaskedInput
//   round 3  Unmasking              server -> client   UnmaskRequest
//                                   client -> server   UnmaskResponse
//
// Every message is bound to (round_id, index): `index` is the sending client
// for client -> server messages and the addressed client for server -> client
// ones. The transport must authenticate that a client -> server message comes
// from the client with that index (enrollment token / mTLS identity); the
// state machines then refuse other rounds, other recipients and duplicates.
//
// Wire format (all integers little-endian):
//   header   u8 type | u8 version (1) | u64 round_id | u32 index     14 bytes
//   ClientKeys      32-byte cipher public key | 32-byte mask public key
//   NeighborKeys    u32 count | count x (u32 index | 32 B cipher pk | 32 B mask pk)
//   ClientShares    u32 count | count x (u32 recipient | 108 B ciphertext)
//   RoutedShares    u32 count | count x (u32 sender | 108 B ciphertext)
//   MaskedInput     u64 length | length x u32
//   UnmaskRequest   u32 count | count x u32 survived | u32 count | count x u32 dropped
//   UnmaskResponse  u32 count | count x (u32 owner | 40 B share)   self-mask shares
//                   u32 count | count x (u32 owner | 40 B share)   mask-key shares
// Parsers accept exactly this: wrong type or version, truncated input,
// counts beyond the remaining bytes, or trailing bytes are InvalidArgument.
#ifndef FEDFM_AGGREGATION_SECAGG_MESSAGES_H_
#define FEDFM_AGGREGATION_SECAGG_MESSAGES_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "aggregation/secagg/crypto.h"
#include "aggregation/secagg/shamir.h"

namespace fedfm::secagg {

inline constexpr uint8_t kWireVersion = 1;
inline constexpr size_t kHeaderBytes = 14;
// The plaintext of one encrypted share: the holder's Shamir shares of the
// owner's self-mask seed b and of its mask private key s_sk.
inline constexpr size_t kSharePlaintextBytes = 2 * kShamirShareBytes;
inline constexpr size_t kShareCiphertextBytes = kSharePlaintextBytes + kGcmOverheadBytes;  // 108

enum class MessageType : uint8_t {
  kClientKeys = 1,
  kNeighborKeys = 2,
  kClientShares = 3,
  kRoutedShares = 4,
  kMaskedInput = 5,
  kUnmaskRequest = 6,
  kUnmaskResponse = 7,
};

// Round 0, client -> server: the client's two fresh X25519 public keys.
struct ClientKeys {
  uint64_t round_id = 0;
  uint32_t index = 0;        // sender
  Key cipher_public_key{};   // c_pk: agrees the keys that encrypt shares
  Key mask_public_key{};     // s_pk: agrees the pairwise mask seeds
};

struct PeerKeys {
  uint32_t index = 0;
  Key cipher_public_key{};
  Key mask_public_key{};
};

// Round 0, server -> client: the keys of the client's graph neighbours that
// advertised, ascending by index.
struct NeighborKeys {
  uint64_t round_id = 0;
  uint32_t index = 0;  // recipient
  std::vector<PeerKeys> neighbors;
};

// An AES-256-GCM sealed share (nonce | ciphertext | tag, 108 bytes), bound by
// its key and associated data to (round, sender, recipient). `peer` is the
// recipient inside ClientShares and the sender inside RoutedShares.
struct EncryptedShare {
  uint32_t peer = 0;
  Bytes ciphertext;
};

// Round 1, client -> server: one encrypted share for each neighbour listed in
// the client's NeighborKeys, ascending by recipient.
struct ClientShares {
  uint64_t round_id = 0;
  uint32_t index = 0;  // sender
  std::vector<EncryptedShare> shares;
};

// Round 1, server -> client: the shares addressed to the client from
// neighbours that completed round 1, ascending by sender.
struct RoutedShares {
  uint64_t round_id = 0;
  uint32_t index = 0;  // recipient
  std::vector<EncryptedShare> shares;
};

// Round 2, client -> server: y = x + PRG(b) + sum over peers v of
// +-PRG(s_uv) mod 2^32, P words.
struct MaskedInput {
  uint64_t round_id = 0;
  uint32_t index = 0;  // sender
  std::vector<uint32_t> masked;
};

// Round 3, server -> client: which of the client's peers (the senders of its
// RoutedShares) had their masked input included (`survived`) and which did
// not (`dropped`). Both ascending, disjoint, together exactly the peers.
struct UnmaskRequest {
  uint64_t round_id = 0;
  uint32_t index = 0;  // recipient
  std::vector<uint32_t> survived;
  std::vector<uint32_t> dropped;
};

// A share of `owner`'s secret held by the responding client; its evaluation
// point is the responder's index + 1.
struct RevealedShare {
  uint32_t owner = 0;
  ShareValue value{};
};

// Round 3, client -> server: shares of b for every survived peer and of s_sk
// for every dropped peer, never both for one peer.
struct UnmaskResponse {
  uint64_t round_id = 0;
  uint32_t index = 0;  // sender
  std::vector<RevealedShare> self_mask_shares;  // owners = request.survived
  std::vector<RevealedShare> mask_key_shares;   // owners = request.dropped
};

Bytes Serialize(const ClientKeys& m);
Bytes Serialize(const NeighborKeys& m);
Bytes Serialize(const ClientShares& m);
Bytes Serialize(const RoutedShares& m);
Bytes Serialize(const MaskedInput& m);
Bytes Serialize(const UnmaskRequest& m);
Bytes Serialize(const UnmaskResponse& m);

// Exact byte counts of Serialize(m), without serializing.
size_t SerializedSize(const ClientKeys& m);
size_t SerializedSize(const NeighborKeys& m);
size_t SerializedSize(const ClientShares& m);
size_t SerializedSize(const RoutedShares& m);
size_t SerializedSize(const MaskedInput& m);
size_t SerializedSize(const UnmaskRequest& m);
size_t SerializedSize(const UnmaskResponse& m);

absl::StatusOr<ClientKeys> ParseClientKeys(ByteSpan bytes);
absl::StatusOr<NeighborKeys> ParseNeighborKeys(ByteSpan bytes);
absl::StatusOr<ClientShares> ParseClientShares(ByteSpan bytes);
absl::StatusOr<RoutedShares> ParseRoutedShares(ByteSpan bytes);
absl::StatusOr<MaskedInput> ParseMaskedInput(ByteSpan bytes);
absl::StatusOr<UnmaskRequest> ParseUnmaskRequest(ByteSpan bytes);
absl::StatusOr<UnmaskResponse> ParseUnmaskResponse(ByteSpan bytes);

// The type byte of a serialized message; InvalidArgument if too short or unknown.
absl::StatusOr<MessageType> PeekMessageType(ByteSpan bytes);

}  // namespace fedfm::secagg

#endif  // FEDFM_AGGREGATION_SECAGG_MESSAGES_H_
