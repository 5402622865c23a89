// The cryptographic primitives SecAgg+ needs, behind our own small interface.
// OpenSSL 3 (EVP) is reached only from crypto.cc; nothing here is home-made.
//
//   X25519            key pairs and Diffie-Hellman agreement (RFC 7748)
//   HkdfSha256        key derivation (RFC 5869)
//   AesGcmSeal/Open   AES-256-GCM with a random 96-bit nonce and associated data
//   MaskPrg           AES-256-CTR keystream as a pseudo-random uint32 vector
//   Sha256            digest
//   HmacSha256        message authentication (RFC 2104), one-shot or streamed
//   RandomSource      CSPRNG (OpenSSL RAND_bytes), or a seeded stream for
//                     reproducible simulations and tests
//
// All functions are thread-safe (they share no mutable state); objects
// (MaskPrg, RandomSource) are not, one per thread.
#ifndef FEDFM_AGGREGATION_SECAGG_CRYPTO_H_
#define FEDFM_AGGREGATION_SECAGG_CRYPTO_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedfm::secagg {

using Bytes = std::vector<uint8_t>;
using ByteSpan = std::span<const uint8_t>;

inline constexpr size_t kKeyBytes = 32;       // X25519 keys, AES-256 keys, PRG seeds
inline constexpr size_t kGcmNonceBytes = 12;  // 96-bit nonce
inline constexpr size_t kGcmTagBytes = 16;
inline constexpr size_t kGcmOverheadBytes = kGcmNonceBytes + kGcmTagBytes;

using Key = std::array<uint8_t, kKeyBytes>;

// Source of random bytes. Implementations: NewSystemRandom() for real
// deployments; NewSeededRandom() where every draw must follow from a seed.
class RandomSource {
 public:
  virtual ~RandomSource() = default;
  // Fills `out` entirely. Internal if the generator fails.
  virtual absl::Status Fill(std::span<uint8_t> out) = 0;

  absl::StatusOr<Key> NewKey();
};

// OpenSSL's CSPRNG (RAND_bytes). The one to use outside simulations.
std::unique_ptr<RandomSource> NewSystemRandom();
// A deterministic stream: the AES-256-CTR keystream under `seed` (as MaskPrg).
// For simulations and tests that must replay bit-exactly; its output is only
// as secret as `seed`.
std::unique_ptr<RandomSource> NewSeededRandom(const Key& seed);

// --- X25519 (RFC 7748) --------------------------------------------------------

struct X25519KeyPair {
  Key private_key;  // raw 32 bytes (clamped by X25519 itself when used)
  Key public_key;
};

// A fresh key pair whose private key is drawn from `rng`.
absl::StatusOr<X25519KeyPair> GenerateX25519KeyPair(RandomSource& rng);
// The public key of a raw private key.
absl::StatusOr<Key> X25519PublicKey(const Key& private_key);
// The shared secret X25519(private_key, peer_public_key). InvalidArgument if
// the peer key is a low-order point (the result would be all zeros).
absl::StatusOr<Key> X25519Agree(const Key& private_key, const Key& peer_public_key);

// InvalidArgument if `public_key` is a low-order point, with which every
// agreement would give the all-zero secret (a peer could use one to make its
// neighbours abort). Costs one scalar multiplication.
absl::Status CheckX25519PublicKey(const Key& public_key);

// --- HKDF-SHA256 (RFC 5869) ---------------------------------------------------

// Extract-then-expand; `length` in 1..255*32.
absl::StatusOr<Bytes> HkdfSha256(ByteSpan ikm, ByteSpan salt, ByteSpan info, size_t length);
// The 32-byte case, for keys and PRG seeds.
absl::StatusOr<Key> HkdfSha256Key(ByteSpan ikm, ByteSpan salt, ByteSpan info);

// --- AES-256-GCM ----------------------------------------------------------------

// Encrypts `plaintext` under `key` with a fresh 96-bit nonce from `rng`,
// authenticating `associated_data` too. Returns nonce || ciphertext || tag
// (plaintext.size() + kGcmOverheadBytes bytes).
absl::StatusOr<Bytes> AesGcmSeal(const Key& key, ByteSpan plaintext, ByteSpan associated_data,
                                 RandomSource& rng);
// As AesGcmSeal with a caller-chosen nonce (known-answer tests). A nonce must
// never repeat under one key.
absl::StatusOr<Bytes> AesGcmSealWithNonce(const Key& key, ByteSpan nonce, ByteSpan plaintext,
                                          ByteSpan associated_data);
// Inverse of AesGcmSeal. InvalidArgument if `sealed` is too short;
// PermissionDenied if authentication fails (wrong key, tampered bytes or a
// different `associated_data`).
absl::StatusOr<Bytes> AesGcmOpen(const Key& key, ByteSpan sealed, ByteSpan associated_data);

// --- PRG: AES-256-CTR keystream ---------------------------------------------------

// Expands a 32-byte seed into a stream of uint32 words, bit-exactly specified:
// the AES-256-CTR keystream with key = seed and an all-zero initial 128-bit
// big-endian counter block, read as little-endian uint32 words. Word w lies in
// counter block w / 4, so the stream can start at any multiple of 4 words
// (threads expand disjoint ranges of one mask). Each seed keys one stream.
// Not thread-safe; cheap to create (one EVP context).
class MaskPrg {
 public:
  // Starts the stream at word `word_offset` (a multiple of 4).
  static absl::StatusOr<MaskPrg> Create(const Key& seed, uint64_t word_offset = 0);
  MaskPrg(MaskPrg&&) noexcept;
  MaskPrg& operator=(MaskPrg&&) noexcept;
  ~MaskPrg();

  // Writes the next out.size() words. Successive calls continue the stream;
  // sizes other than multiples of 4 are fine (the rest of a block is kept).
  absl::Status Generate(std::span<uint32_t> out);
  // Adds (sign = +1) or subtracts (sign = -1) the next acc.size() words into
  // `acc`, modulo 2^32.
  absl::Status Accumulate(std::span<uint32_t> acc, int sign);

 private:
  struct Impl;
  explicit MaskPrg(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// --- SHA-256 --------------------------------------------------------------------

Key Sha256(ByteSpan data);

// --- HMAC-SHA256 (RFC 2104) ------------------------------------------------------

// The MAC of `data` under `key` (any length; keys longer than 64 bytes are
// hashed first, as RFC 2104 says). Authenticates the coordinator's client
// requests (client secret = key).
Key HmacSha256(ByteSpan key, ByteSpan data);

// The same MAC over data that arrives in pieces (a streamed upload):
// Update(a); Update(b); Finish() == HmacSha256(key, a || b). Finish once.
class HmacSha256Stream {
 public:
  explicit HmacSha256Stream(ByteSpan key);
  HmacSha256Stream(HmacSha256Stream&&) noexcept;
  HmacSha256Stream& operator=(HmacSha256Stream&&) noexcept;
  ~HmacSha256Stream();

  void Update(ByteSpan data);
  Key Finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Overwrites `bytes` with zeros in a way the compiler may not elide
// (OPENSSL_cleanse), for secrets that are no longer needed.
void SecureZero(std::span<uint8_t> bytes);
inline void SecureZero(Key& key) { SecureZero(std::span<uint8_t>(key)); }

// Constant-time equality of two byte strings of equal length (false if the
// lengths differ).
bool ConstantTimeEquals(ByteSpan a, ByteSpan b);

}  // namespace fedfm::secagg

#endif  // FEDFM_AGGREGATION_SECAGG_CRYPTO_H_
