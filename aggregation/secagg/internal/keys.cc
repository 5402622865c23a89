#include "aggregation/secagg/internal/keys.h"

#include <algorithm>
#include <cstring>

namespace fedfm::secagg::internal {
namespace {

void PutU32(Bytes& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutU64(Bytes& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
Bytes Label(const char* text) {
  return Bytes(reinterpret_cast<const uint8_t*>(text),
               reinterpret_cast<const uint8_t*>(text) + std::strlen(text));
}

absl::StatusOr<Key> DerivePairKey(const Key& private_key, const Key& peer_public_key,
                                  const char* salt, uint64_t round_id, uint32_t a, uint32_t b) {
  absl::StatusOr<Key> agreed = X25519Agree(private_key, peer_public_key);
  if (!agreed.ok()) return agreed.status();
  Bytes info;
  PutU64(info, round_id);
  PutU32(info, std::min(a, b));
  PutU32(info, std::max(a, b));
  absl::StatusOr<Key> key = HkdfSha256Key(*agreed, Label(salt), info);
  agreed->fill(0);
  return key;
}

}  // namespace

absl::StatusOr<Key> ShareKey(const Key& cipher_private_key, const Key& peer_cipher_public_key,
                             uint64_t round_id, uint32_t a, uint32_t b) {
  return DerivePairKey(cipher_private_key, peer_cipher_public_key, "fedfm-secagg-v1/share-key",
                       round_id, a, b);
}

absl::StatusOr<Key> PairwiseMaskSeed(const Key& mask_private_key,
                                     const Key& peer_mask_public_key, uint64_t round_id,
                                     uint32_t a, uint32_t b) {
  return DerivePairKey(mask_private_key, peer_mask_public_key, "fedfm-secagg-v1/mask-seed",
                       round_id, a, b);
}

Bytes ShareAssociatedData(uint64_t round_id, uint32_t from, uint32_t to) {
  Bytes aad = Label("fedfm-secagg-v1/share");
  PutU64(aad, round_id);
  PutU32(aad, from);
  PutU32(aad, to);
  return aad;
}

}  // namespace fedfm::secagg::internal
