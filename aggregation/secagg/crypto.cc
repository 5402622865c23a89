// The only translation unit of fedfm that includes OpenSSL.
#include "aggregation/secagg/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <bit>
#include <climits>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "protocols/check.h"

namespace fedfm::secagg {
namespace {

// Keystream is produced by encrypting this many zero bytes per EVP call: large
// enough to amortise the call, small enough to stay in L1/L2 with the output.
constexpr size_t kZeroBlockBytes = 16384;
alignas(64) const uint8_t kZeros[kZeroBlockBytes] = {};

// OpenSSL's last error, for Internal statuses ("what failed: why").
absl::Status OpenSslError(const char* what) {
  unsigned long code = ERR_get_error();
  char buf[256] = "unknown error";
  if (code != 0) ERR_error_string_n(code, buf, sizeof(buf));
  ERR_clear_error();
  return absl::InternalError(absl::StrCat("OpenSSL ", what, ": ", buf));
}

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct PkeyCtxDeleter {
  void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
struct KdfCtxDeleter {
  void operator()(EVP_KDF_CTX* c) const { EVP_KDF_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using PkeyCtx = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxDeleter>;
using KdfCtx = std::unique_ptr<EVP_KDF_CTX, KdfCtxDeleter>;

// Explicitly fetched algorithms, fetched once per process and never freed
// (avoids OpenSSL 3's implicit fetch on every context initialisation).
const EVP_CIPHER* Aes256Ctr() {
  static const EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-CTR", nullptr);
  FEDFM_CHECK_MSG(cipher != nullptr, "OpenSSL has no AES-256-CTR");
  return cipher;
}
const EVP_CIPHER* Aes256Gcm() {
  static const EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  FEDFM_CHECK_MSG(cipher != nullptr, "OpenSSL has no AES-256-GCM");
  return cipher;
}
EVP_KDF* Hkdf() {
  static EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  FEDFM_CHECK_MSG(kdf != nullptr, "OpenSSL has no HKDF");
  return kdf;
}

// A CTR context keyed by `seed`, positioned at 16-byte block `block`.
absl::StatusOr<CipherCtx> NewCtrContext(const Key& seed, uint64_t block) {
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return OpenSslError("EVP_CIPHER_CTX_new");
  uint8_t iv[16] = {};
  for (int i = 0; i < 8; ++i) iv[15 - i] = static_cast<uint8_t>(block >> (8 * i));
  if (EVP_EncryptInit_ex2(ctx.get(), Aes256Ctr(), seed.data(), iv, nullptr) != 1) {
    return OpenSslError("AES-256-CTR init");
  }
  return ctx;
}

// Writes the next n keystream bytes of `ctx` to `out`.
absl::Status CtrKeystream(EVP_CIPHER_CTX* ctx, uint8_t* out, size_t n) {
  while (n > 0) {
    const size_t chunk = std::min(n, kZeroBlockBytes);
    int written = 0;
    if (EVP_EncryptUpdate(ctx, out, &written, kZeros, static_cast<int>(chunk)) != 1 ||
        static_cast<size_t>(written) != chunk) {
      return OpenSslError("AES-256-CTR keystream");
    }
    out += chunk;
    n -= chunk;
  }
  return absl::OkStatus();
}

class SystemRandom final : public RandomSource {
 public:
  absl::Status Fill(std::span<uint8_t> out) override {
    size_t done = 0;
    while (done < out.size()) {
      const int chunk = static_cast<int>(std::min<size_t>(out.size() - done, INT_MAX));
      if (RAND_bytes(out.data() + done, chunk) != 1) return OpenSslError("RAND_bytes");
      done += chunk;
    }
    return absl::OkStatus();
  }
};

class SeededRandom final : public RandomSource {
 public:
  explicit SeededRandom(CipherCtx ctx) : ctx_(std::move(ctx)) {}
  absl::Status Fill(std::span<uint8_t> out) override {
    return CtrKeystream(ctx_.get(), out.data(), out.size());
  }

 private:
  CipherCtx ctx_;
};

absl::StatusOr<Pkey> PrivateKey(const Key& private_key) {
  Pkey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, private_key.data(),
                                        private_key.size()));
  if (!key) return OpenSslError("X25519 private key");
  return key;
}

// OpenSSL rejects null pointers for empty inputs in places; point empty spans
// at a harmless byte.
const uint8_t* NonNull(ByteSpan s) {
  static const uint8_t kEmpty = 0;
  return s.empty() ? &kEmpty : s.data();
}

}  // namespace

absl::StatusOr<Key> RandomSource::NewKey() {
  Key key;
  absl::Status status = Fill(key);
  if (!status.ok()) return status;
  return key;
}

std::unique_ptr<RandomSource> NewSystemRandom() { return std::make_unique<SystemRandom>(); }

std::unique_ptr<RandomSource> NewSeededRandom(const Key& seed) {
  absl::StatusOr<CipherCtx> ctx = NewCtrContext(seed, 0);
  FEDFM_CHECK_MSG(ctx.ok(), "AES-256-CTR context for a seeded random stream");
  return std::make_unique<SeededRandom>(*std::move(ctx));
}

// --- X25519 ---------------------------------------------------------------------

absl::StatusOr<X25519KeyPair> GenerateX25519KeyPair(RandomSource& rng) {
  X25519KeyPair pair;
  absl::Status status = rng.Fill(pair.private_key);
  if (!status.ok()) return status;
  absl::StatusOr<Key> public_key = X25519PublicKey(pair.private_key);
  if (!public_key.ok()) return public_key.status();
  pair.public_key = *public_key;
  return pair;
}

absl::StatusOr<Key> X25519PublicKey(const Key& private_key) {
  absl::StatusOr<Pkey> key = PrivateKey(private_key);
  if (!key.ok()) return key.status();
  Key public_key;
  size_t len = public_key.size();
  if (EVP_PKEY_get_raw_public_key(key->get(), public_key.data(), &len) != 1 ||
      len != public_key.size()) {
    return OpenSslError("X25519 public key");
  }
  return public_key;
}

absl::StatusOr<Key> X25519Agree(const Key& private_key, const Key& peer_public_key) {
  absl::StatusOr<Pkey> key = PrivateKey(private_key);
  if (!key.ok()) return key.status();
  Pkey peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer_public_key.data(),
                                        peer_public_key.size()));
  if (!peer) return OpenSslError("X25519 peer public key");
  PkeyCtx ctx(EVP_PKEY_CTX_new(key->get(), nullptr));
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1) {
    return OpenSslError("X25519 derive setup");
  }
  Key shared;
  size_t len = shared.size();
  if (EVP_PKEY_derive(ctx.get(), shared.data(), &len) != 1 || len != shared.size()) {
    // OpenSSL refuses an all-zero result: the peer key is a low-order point.
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "X25519: peer public key is a low-order point (shared secret would be zero)");
  }
  return shared;
}

absl::Status CheckX25519PublicKey(const Key& public_key) {
  // Low-order points give zero for every clamped scalar (a multiple of the
  // cofactor 8), so one agreement with any fixed private key detects them.
  Key probe;
  probe.fill(0x5a);
  absl::StatusOr<Key> shared = X25519Agree(probe, public_key);
  if (!shared.ok()) return shared.status();
  return absl::OkStatus();
}

// --- HKDF -----------------------------------------------------------------------

absl::StatusOr<Bytes> HkdfSha256(ByteSpan ikm, ByteSpan salt, ByteSpan info, size_t length) {
  if (length == 0 || length > 255 * 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("HKDF-SHA256: output length must be 1..8160, got ", length));
  }
  if (ikm.empty()) return absl::InvalidArgumentError("HKDF-SHA256: empty input key material");
  KdfCtx ctx(EVP_KDF_CTX_new(Hkdf()));
  if (!ctx) return OpenSslError("EVP_KDF_CTX_new");
  char digest[] = "SHA256";
  OSSL_PARAM params[5];
  params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                                const_cast<uint8_t*>(ikm.data()), ikm.size());
  params[2] = OSSL_PARAM_construct_octet_string(
      OSSL_KDF_PARAM_SALT, const_cast<uint8_t*>(NonNull(salt)), salt.size());
  params[3] = OSSL_PARAM_construct_octet_string(
      OSSL_KDF_PARAM_INFO, const_cast<uint8_t*>(NonNull(info)), info.size());
  params[4] = OSSL_PARAM_construct_end();
  Bytes out(length);
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
    return OpenSslError("HKDF-SHA256 derive");
  }
  return out;
}

absl::StatusOr<Key> HkdfSha256Key(ByteSpan ikm, ByteSpan salt, ByteSpan info) {
  absl::StatusOr<Bytes> out = HkdfSha256(ikm, salt, info, kKeyBytes);
  if (!out.ok()) return out.status();
  Key key;
  std::memcpy(key.data(), out->data(), key.size());
  return key;
}

// --- AES-256-GCM ------------------------------------------------------------------

absl::StatusOr<Bytes> AesGcmSeal(const Key& key, ByteSpan plaintext, ByteSpan associated_data,
                                 RandomSource& rng) {
  uint8_t nonce[kGcmNonceBytes];
  absl::Status status = rng.Fill(nonce);
  if (!status.ok()) return status;
  return AesGcmSealWithNonce(key, nonce, plaintext, associated_data);
}

absl::StatusOr<Bytes> AesGcmSealWithNonce(const Key& key, ByteSpan nonce, ByteSpan plaintext,
                                          ByteSpan associated_data) {
  if (nonce.size() != kGcmNonceBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("AES-256-GCM: nonce must be 12 bytes, got ", nonce.size()));
  }
  if (plaintext.size() > (size_t{1} << 30) || associated_data.size() > (size_t{1} << 30)) {
    return absl::InvalidArgumentError("AES-256-GCM: input over 1 GiB");
  }
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx || EVP_EncryptInit_ex2(ctx.get(), Aes256Gcm(), key.data(), nonce.data(), nullptr) != 1) {
    return OpenSslError("AES-256-GCM encrypt init");
  }
  int len = 0;
  if (!associated_data.empty() &&
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, associated_data.data(),
                        static_cast<int>(associated_data.size())) != 1) {
    return OpenSslError("AES-256-GCM associated data");
  }
  Bytes sealed(kGcmNonceBytes + plaintext.size() + kGcmTagBytes);
  std::memcpy(sealed.data(), nonce.data(), kGcmNonceBytes);
  uint8_t* ct = sealed.data() + kGcmNonceBytes;
  int written = 0;
  if (!plaintext.empty()) {
    if (EVP_EncryptUpdate(ctx.get(), ct, &len, plaintext.data(),
                          static_cast<int>(plaintext.size())) != 1) {
      return OpenSslError("AES-256-GCM encrypt");
    }
    written = len;
  }
  if (EVP_EncryptFinal_ex(ctx.get(), ct + written, &len) != 1) {
    return OpenSslError("AES-256-GCM encrypt final");
  }
  written += len;
  FEDFM_CHECK(static_cast<size_t>(written) == plaintext.size());
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kGcmTagBytes, ct + written) != 1) {
    return OpenSslError("AES-256-GCM tag");
  }
  return sealed;
}

absl::StatusOr<Bytes> AesGcmOpen(const Key& key, ByteSpan sealed, ByteSpan associated_data) {
  if (sealed.size() < kGcmOverheadBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AES-256-GCM: sealed message of ", sealed.size(), " bytes is shorter than nonce + tag (28)"));
  }
  if (sealed.size() > (size_t{1} << 30) || associated_data.size() > (size_t{1} << 30)) {
    return absl::InvalidArgumentError("AES-256-GCM: input over 1 GiB");
  }
  const size_t ct_len = sealed.size() - kGcmOverheadBytes;
  const uint8_t* nonce = sealed.data();
  const uint8_t* ct = sealed.data() + kGcmNonceBytes;
  const uint8_t* tag = ct + ct_len;
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx || EVP_DecryptInit_ex2(ctx.get(), Aes256Gcm(), key.data(), nonce, nullptr) != 1) {
    return OpenSslError("AES-256-GCM decrypt init");
  }
  int len = 0;
  if (!associated_data.empty() &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, associated_data.data(),
                        static_cast<int>(associated_data.size())) != 1) {
    return OpenSslError("AES-256-GCM associated data");
  }
  Bytes plaintext(ct_len);
  int written = 0;
  if (ct_len > 0) {
    if (EVP_DecryptUpdate(ctx.get(), plaintext.data(), &len, ct, static_cast<int>(ct_len)) != 1) {
      return OpenSslError("AES-256-GCM decrypt");
    }
    written = len;
  }
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kGcmTagBytes,
                          const_cast<uint8_t*>(tag)) != 1) {
    return OpenSslError("AES-256-GCM set tag");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), plaintext.data() + written, &len) != 1) {
    ERR_clear_error();
    return absl::PermissionDeniedError(
        "AES-256-GCM: authentication failed (wrong key, tampered ciphertext or associated data)");
  }
  return plaintext;
}

// --- PRG --------------------------------------------------------------------------

struct MaskPrg::Impl {
  CipherCtx ctx;
};

MaskPrg::MaskPrg(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MaskPrg::MaskPrg(MaskPrg&&) noexcept = default;
MaskPrg& MaskPrg::operator=(MaskPrg&&) noexcept = default;
MaskPrg::~MaskPrg() = default;

absl::StatusOr<MaskPrg> MaskPrg::Create(const Key& seed, uint64_t word_offset) {
  if (word_offset % 4 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("MaskPrg: word offset must be a multiple of 4, got ", word_offset));
  }
  absl::StatusOr<CipherCtx> ctx = NewCtrContext(seed, word_offset / 4);
  if (!ctx.ok()) return ctx.status();
  auto impl = std::make_unique<Impl>();
  impl->ctx = *std::move(ctx);
  return MaskPrg(std::move(impl));
}

absl::Status MaskPrg::Generate(std::span<uint32_t> out) {
  absl::Status status = CtrKeystream(impl_->ctx.get(), reinterpret_cast<uint8_t*>(out.data()),
                                     out.size_bytes());
  if (!status.ok()) return status;
  if constexpr (std::endian::native == std::endian::big) {
    for (uint32_t& w : out) w = __builtin_bswap32(w);
  }
  return absl::OkStatus();
}

absl::Status MaskPrg::Accumulate(std::span<uint32_t> acc, int sign) {
  FEDFM_CHECK(sign == 1 || sign == -1);
  constexpr size_t kChunkWords = kZeroBlockBytes / sizeof(uint32_t);
  alignas(64) uint32_t buf[kChunkWords];
  for (size_t begin = 0; begin < acc.size(); begin += kChunkWords) {
    const size_t n = std::min(kChunkWords, acc.size() - begin);
    absl::Status status = Generate(std::span<uint32_t>(buf, n));
    if (!status.ok()) return status;
    uint32_t* a = acc.data() + begin;
    if (sign > 0) {
      for (size_t i = 0; i < n; ++i) a[i] += buf[i];
    } else {
      for (size_t i = 0; i < n; ++i) a[i] -= buf[i];
    }
  }
  return absl::OkStatus();
}

// --- SHA-256 ------------------------------------------------------------------------

Key Sha256(ByteSpan data) {
  Key digest;
  unsigned int len = 0;
  FEDFM_CHECK_MSG(EVP_Digest(NonNull(data), data.size(), digest.data(), &len, EVP_sha256(),
                             nullptr) == 1 &&
                      len == digest.size(),
                  "SHA-256 digest");
  return digest;
}

// --- HMAC-SHA256 -------------------------------------------------------------------

namespace {
EVP_MAC* Hmac() {
  static EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  FEDFM_CHECK_MSG(mac != nullptr, "OpenSSL has no HMAC");
  return mac;
}
}  // namespace

struct HmacSha256Stream::Impl {
  EVP_MAC_CTX* ctx = nullptr;
  ~Impl() { EVP_MAC_CTX_free(ctx); }
};

HmacSha256Stream::HmacSha256Stream(ByteSpan key) : impl_(std::make_unique<Impl>()) {
  impl_->ctx = EVP_MAC_CTX_new(Hmac());
  FEDFM_CHECK_MSG(impl_->ctx != nullptr, "EVP_MAC_CTX_new");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  FEDFM_CHECK_MSG(EVP_MAC_init(impl_->ctx, NonNull(key), key.size(), params) == 1, "HMAC-SHA256 init");
}
HmacSha256Stream::HmacSha256Stream(HmacSha256Stream&&) noexcept = default;
HmacSha256Stream& HmacSha256Stream::operator=(HmacSha256Stream&&) noexcept = default;
HmacSha256Stream::~HmacSha256Stream() = default;

void HmacSha256Stream::Update(ByteSpan data) {
  if (data.empty()) return;
  FEDFM_CHECK_MSG(EVP_MAC_update(impl_->ctx, data.data(), data.size()) == 1, "HMAC-SHA256 update");
}

Key HmacSha256Stream::Finish() {
  Key out;
  size_t len = 0;
  FEDFM_CHECK_MSG(EVP_MAC_final(impl_->ctx, out.data(), &len, out.size()) == 1 && len == out.size(),
                  "HMAC-SHA256 final");
  return out;
}

Key HmacSha256(ByteSpan key, ByteSpan data) {
  HmacSha256Stream stream(key);
  stream.Update(data);
  return stream.Finish();
}

void SecureZero(std::span<uint8_t> bytes) {
  if (!bytes.empty()) OPENSSL_cleanse(bytes.data(), bytes.size());
}

bool ConstantTimeEquals(ByteSpan a, ByteSpan b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(NonNull(a), NonNull(b), a.size()) == 0;
}

}  // namespace fedfm::secagg
