// Key schedule shared by the SecAgg+ client and server. Private to secagg/.
//
//   share key  (u, v) = HKDF-SHA256(ikm = X25519(c_sk_u, c_pk_v),
//                                   salt = "fedfm-secagg-v1/share-key",
//                                   info = round_id | min(u, v) | max(u, v))
//   mask seed  (u, v) = HKDF-SHA256(ikm = X25519(s_sk_u, s_pk_v),
//                                   salt = "fedfm-secagg-v1/mask-seed", info as above)
//   share AAD  u -> v = "fedfm-secagg-v1/share" | round_id | u | v
// with round_id as u64 and indices as u32, little-endian. Both ends of a pair
// derive the same key and seed; the AAD fixes the direction.
#ifndef FEDFM_AGGREGATION_SECAGG_INTERNAL_KEYS_H_
#define FEDFM_AGGREGATION_SECAGG_INTERNAL_KEYS_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "aggregation/secagg/crypto.h"

namespace fedfm::secagg::internal {

absl::StatusOr<Key> ShareKey(const Key& cipher_private_key, const Key& peer_cipher_public_key,
                             uint64_t round_id, uint32_t a, uint32_t b);
absl::StatusOr<Key> PairwiseMaskSeed(const Key& mask_private_key,
                                     const Key& peer_mask_public_key, uint64_t round_id,
                                     uint32_t a, uint32_t b);
Bytes ShareAssociatedData(uint64_t round_id, uint32_t from, uint32_t to);

// The sign with which client `self` adds the pairwise mask shared with
// `peer`: + when self < peer, - otherwise, so the pair cancels in the sum.
inline int PairwiseSign(uint32_t self, uint32_t peer) { return self < peer ? +1 : -1; }

}  // namespace fedfm::secagg::internal

#endif  // FEDFM_AGGREGATION_SECAGG_INTERNAL_KEYS_H_
