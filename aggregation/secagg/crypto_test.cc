#include "aggregation/secagg/crypto.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"

namespace fedfm::secagg {
namespace {

Bytes FromHex(const std::string& hex) {
  const std::string bytes = absl::HexStringToBytes(hex);
  return Bytes(bytes.begin(), bytes.end());
}

Key KeyFromHex(const std::string& hex) {
  Bytes b = FromHex(hex);
  Key k{};
  EXPECT_EQ(b.size(), k.size());
  std::copy(b.begin(), b.end(), k.begin());
  return k;
}

std::string ToHex(ByteSpan bytes) {
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

ByteSpan AsBytes(const std::string& s) {
  return ByteSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// RFC 7748, section 6.1.
TEST(CryptoTest, X25519Rfc7748Section61) {
  const Key alice_private =
      KeyFromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  const Key bob_private =
      KeyFromHex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
  const std::string alice_public = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
  const std::string bob_public = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
  const std::string shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

  absl::StatusOr<Key> a_pub = X25519PublicKey(alice_private);
  absl::StatusOr<Key> b_pub = X25519PublicKey(bob_private);
  ASSERT_TRUE(a_pub.ok() && b_pub.ok());
  EXPECT_EQ(ToHex(*a_pub), alice_public);
  EXPECT_EQ(ToHex(*b_pub), bob_public);

  absl::StatusOr<Key> ab = X25519Agree(alice_private, KeyFromHex(bob_public));
  absl::StatusOr<Key> ba = X25519Agree(bob_private, KeyFromHex(alice_public));
  ASSERT_TRUE(ab.ok()) << ab.status();
  ASSERT_TRUE(ba.ok()) << ba.status();
  EXPECT_EQ(ToHex(*ab), shared);
  EXPECT_EQ(ToHex(*ba), shared);
}

TEST(CryptoTest, X25519RejectsLowOrderPoint) {
  Key zero_point{};  // u = 0 has small order: the shared secret would be zero
  absl::StatusOr<Key> s = X25519Agree(KeyFromHex(std::string(64, '7')), zero_point);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CryptoTest, CheckX25519PublicKeyRefusesLowOrderPoints) {
  Key zero{};
  Key one{};
  one[0] = 1;  // u = 1: order 4
  EXPECT_EQ(CheckX25519PublicKey(zero).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckX25519PublicKey(one).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(
      CheckX25519PublicKey(
          KeyFromHex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"))
          .ok());
}

TEST(CryptoTest, GeneratedKeyPairsAgree) {
  auto rng = NewSeededRandom(KeyFromHex(std::string(64, 'a')));
  absl::StatusOr<X25519KeyPair> a = GenerateX25519KeyPair(*rng);
  absl::StatusOr<X25519KeyPair> b = GenerateX25519KeyPair(*rng);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->public_key, b->public_key);
  absl::StatusOr<Key> ab = X25519Agree(a->private_key, b->public_key);
  absl::StatusOr<Key> ba = X25519Agree(b->private_key, a->public_key);
  ASSERT_TRUE(ab.ok() && ba.ok());
  EXPECT_EQ(*ab, *ba);
}

// RFC 5869, appendix A.1 (test case 1).
TEST(CryptoTest, HkdfRfc5869TestCase1) {
  const Bytes ikm(22, 0x0b);
  const Bytes salt = FromHex("000102030405060708090a0b0c");
  const Bytes info = FromHex("f0f1f2f3f4f5f6f7f8f9");
  absl::StatusOr<Bytes> okm = HkdfSha256(ikm, salt, info, 42);
  ASSERT_TRUE(okm.ok()) << okm.status();
  EXPECT_EQ(ToHex(*okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
  EXPECT_FALSE(HkdfSha256(ikm, salt, info, 0).ok());
  EXPECT_FALSE(HkdfSha256(ikm, salt, info, 255 * 32 + 1).ok());
}

// McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", test case 16
// (AES-256, 96-bit IV, 60-byte plaintext, 20 bytes of associated data).
TEST(CryptoTest, AesGcmSpecTestCase16) {
  const Key key = KeyFromHex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
  const Bytes iv = FromHex("cafebabefacedbaddecaf888");
  const Bytes plaintext = FromHex(
      "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
      "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
  const Bytes aad = FromHex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
  const std::string ciphertext =
      "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
      "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662";
  const std::string tag = "76fc6ece0f4e1768cddf8853bb2d551b";

  absl::StatusOr<Bytes> sealed = AesGcmSealWithNonce(key, iv, plaintext, aad);
  ASSERT_TRUE(sealed.ok()) << sealed.status();
  EXPECT_EQ(ToHex(*sealed), "cafebabefacedbaddecaf888" + ciphertext + tag);

  absl::StatusOr<Bytes> opened = AesGcmOpen(key, *sealed, aad);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, plaintext);
}

TEST(CryptoTest, AesGcmRejectsTamperingAndWrongAssociatedData) {
  auto rng = NewSeededRandom(KeyFromHex(std::string(64, 'b')));
  absl::StatusOr<Key> key = rng->NewKey();
  ASSERT_TRUE(key.ok());
  const std::string message = "share of client 3 for client 7";
  const std::string aad = "round 12 from 3 to 7";
  absl::StatusOr<Bytes> sealed = AesGcmSeal(*key, AsBytes(message), AsBytes(aad), *rng);
  ASSERT_TRUE(sealed.ok());
  ASSERT_EQ(sealed->size(), message.size() + kGcmOverheadBytes);

  absl::StatusOr<Bytes> opened = AesGcmOpen(*key, *sealed, AsBytes(aad));
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(std::string(opened->begin(), opened->end()), message);

  // Every single flipped bit (nonce, ciphertext or tag) is refused.
  for (size_t i = 0; i < sealed->size(); ++i) {
    Bytes tampered = *sealed;
    tampered[i] ^= static_cast<uint8_t>(1u << (i % 8));
    EXPECT_EQ(AesGcmOpen(*key, tampered, AsBytes(aad)).status().code(),
              absl::StatusCode::kPermissionDenied)
        << "byte " << i;
  }
  EXPECT_EQ(AesGcmOpen(*key, *sealed, AsBytes(std::string("round 12 from 3 to 8"))).status().code(),
            absl::StatusCode::kPermissionDenied);
  Key other = *key;
  other[0] ^= 1;
  EXPECT_EQ(AesGcmOpen(other, *sealed, AsBytes(aad)).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(AesGcmOpen(*key, ByteSpan(sealed->data(), 27), AsBytes(aad)).status().code(),
            absl::StatusCode::kInvalidArgument);

  // Fresh nonces: sealing twice gives different bytes.
  absl::StatusOr<Bytes> again = AesGcmSeal(*key, AsBytes(message), AsBytes(aad), *rng);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(*again, *sealed);
}

TEST(CryptoTest, Sha256Abc) {
  EXPECT_EQ(ToHex(Sha256(AsBytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// RFC 4231 test cases 1, 2 and 6 (a key longer than the block size), and the
// streamed form split at every offset of case 2.
TEST(CryptoTest, HmacSha256Rfc4231) {
  EXPECT_EQ(ToHex(HmacSha256(FromHex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"), AsBytes("Hi There"))),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(ToHex(HmacSha256(AsBytes("Jefe"), AsBytes("what do ya want for nothing?"))),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  const Bytes long_key(131, 0xaa);
  EXPECT_EQ(ToHex(HmacSha256(long_key, AsBytes("Test Using Larger Than Block-Size Key - Hash Key First"))),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  const std::string msg = "what do ya want for nothing?";
  for (size_t split = 0; split <= msg.size(); ++split) {
    HmacSha256Stream stream(AsBytes("Jefe"));
    stream.Update(AsBytes(msg.substr(0, split)));
    stream.Update(AsBytes(msg.substr(split)));
    EXPECT_EQ(ToHex(stream.Finish()), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        << split;
  }
  EXPECT_NE(HmacSha256(AsBytes("Jefe"), AsBytes(msg)), HmacSha256(AsBytes("Jeff"), AsBytes(msg)));
}

// Pins the PRG's definition: the AES-256-CTR keystream (zero initial counter)
// as little-endian words. Reference bytes from the OpenSSL command line:
//   head -c 64 /dev/zero | openssl enc -aes-256-ctr -nosalt \
//     -K 000102...1f -iv 00000000000000000000000000000000 | xxd -p
// and, for counter block 5, -iv 00000000000000000000000000000005.
TEST(CryptoTest, MaskPrgIsAes256CtrKeystream) {
  const Key seed = KeyFromHex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
  absl::StatusOr<MaskPrg> prg = MaskPrg::Create(seed);
  ASSERT_TRUE(prg.ok());
  std::vector<uint32_t> words(16);
  ASSERT_TRUE(prg->Generate(words).ok());
  Bytes bytes(64);
  std::memcpy(bytes.data(), words.data(), 64);  // little-endian host
  EXPECT_EQ(ToHex(bytes),
            "f29000b62a499fd0a9f39a6add2e7780f05d76ae4ab99fe5a6f69b3148c2"
            "363d0ebcb5deb52c83bd08a8a935182c9199d24356532881602f809eb383c5ff5d56");
  EXPECT_EQ(words[0], 0xb60090f2u);

  absl::StatusOr<MaskPrg> at20 = MaskPrg::Create(seed, 20);
  ASSERT_TRUE(at20.ok());
  uint32_t w = 0;
  ASSERT_TRUE(at20->Generate(std::span<uint32_t>(&w, 1)).ok());
  EXPECT_EQ(w, 0xe64107a9u);
  EXPECT_FALSE(MaskPrg::Create(seed, 6).ok());
}

TEST(CryptoTest, MaskPrgStreamsAndSeeksConsistently) {
  auto rng = NewSeededRandom(KeyFromHex(std::string(64, 'c')));
  absl::StatusOr<Key> seed = rng->NewKey();
  ASSERT_TRUE(seed.ok());
  const size_t n = 10000;  // 40 KB: crosses the PRG's internal 16 KiB chunks
  std::vector<uint32_t> whole(n);
  ASSERT_TRUE(MaskPrg::Create(*seed)->Generate(whole).ok());

  // Odd-sized successive calls continue the same stream.
  std::vector<uint32_t> pieces(n);
  absl::StatusOr<MaskPrg> prg = MaskPrg::Create(*seed);
  size_t at = 0;
  for (size_t step : {1, 3, 7, 4096, 5000}) {
    ASSERT_TRUE(prg->Generate(std::span<uint32_t>(pieces.data() + at, step)).ok());
    at += step;
  }
  ASSERT_TRUE(prg->Generate(std::span<uint32_t>(pieces.data() + at, n - at)).ok());
  EXPECT_EQ(pieces, whole);

  // Seeking to word 4000 gives the tail.
  std::vector<uint32_t> tail(n - 4000);
  ASSERT_TRUE(MaskPrg::Create(*seed, 4000)->Generate(tail).ok());
  EXPECT_TRUE(std::equal(tail.begin(), tail.end(), whole.begin() + 4000));

  // Accumulate adds and subtracts modulo 2^32.
  std::vector<uint32_t> acc(n);
  for (size_t i = 0; i < n; ++i) acc[i] = static_cast<uint32_t>(i * 2654435761u);
  std::vector<uint32_t> expected = acc;
  for (size_t i = 0; i < n; ++i) expected[i] += whole[i];
  ASSERT_TRUE(MaskPrg::Create(*seed)->Accumulate(acc, +1).ok());
  EXPECT_EQ(acc, expected);
  ASSERT_TRUE(MaskPrg::Create(*seed)->Accumulate(acc, -1).ok());
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(acc[i], static_cast<uint32_t>(i * 2654435761u));

  // A different seed gives a different stream.
  Key other = *seed;
  other[31] ^= 0x80;
  std::vector<uint32_t> different(n);
  ASSERT_TRUE(MaskPrg::Create(other)->Generate(different).ok());
  EXPECT_NE(different, whole);
}

TEST(CryptoTest, SeededRandomIsReproducibleAndSystemRandomIsNot) {
  const Key seed = KeyFromHex(std::string(64, 'd'));
  Bytes a(100), b(100);
  ASSERT_TRUE(NewSeededRandom(seed)->Fill(a).ok());
  ASSERT_TRUE(NewSeededRandom(seed)->Fill(b).ok());
  EXPECT_EQ(a, b);
  auto system = NewSystemRandom();
  ASSERT_TRUE(system->Fill(a).ok());
  ASSERT_TRUE(system->Fill(b).ok());
  EXPECT_NE(a, b);
}

TEST(CryptoTest, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals(AsBytes("abc"), AsBytes("abc")));
  EXPECT_FALSE(ConstantTimeEquals(AsBytes("abc"), AsBytes("abd")));
  EXPECT_FALSE(ConstantTimeEquals(AsBytes("abc"), AsBytes("ab")));
}

}  // namespace
}  // namespace fedfm::secagg
