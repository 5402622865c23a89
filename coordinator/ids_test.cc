#include "coordinator/ids.h"

#include <cctype>
#include <set>
#include <string>

#include "coordinator/internal/hash.h"
#include "gtest/gtest.h"

namespace fedfm::coordinator {
namespace {

TEST(StoreIdsTest, Sha256MatchesFipsVectors) {
  // FIPS 180-2 appendix B test vectors.
  EXPECT_EQ(internal::Sha256Hex(std::string("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(internal::Sha256Hex(std::string("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(internal::Sha256Hex(std::string("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(internal::Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(StoreIdsTest, RandomBytesHaveTheLengthAskedAndDiffer) {
  absl::StatusOr<std::string> a = RandomBytes(32);
  absl::StatusOr<std::string> b = RandomBytes(32);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->size(), 32u);
  EXPECT_NE(*a, *b);
  absl::StatusOr<std::string> big = RandomBytes(1 << 20);  // more than one getrandom call may return
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->size(), size_t{1} << 20);
  // Every byte value shows up in 1 MiB of uniform bytes.
  std::set<unsigned char> seen(big->begin(), big->end());
  EXPECT_EQ(seen.size(), 256u);
}

TEST(StoreIdsTest, EnrollmentTokensAreShellSafeAndUnique) {
  std::set<std::string> tokens;
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<std::string> token = NewEnrollmentToken();
    ASSERT_TRUE(token.ok()) << token.status();
    ASSERT_EQ(token->rfind("fedfm_et_", 0), 0u) << *token;
    std::string body = token->substr(9);
    EXPECT_EQ(body.size(), 43u) << *token;  // 256 bits, base64url without padding
    for (char c : body) {
      EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') << *token;
    }
    tokens.insert(*token);
  }
  EXPECT_EQ(tokens.size(), 100u);
}

TEST(StoreIdsTest, IdsHavePrefixAndHex) {
  absl::StatusOr<std::string> client = NewClientId();
  absl::StatusOr<std::string> run = NewRunId();
  ASSERT_TRUE(client.ok() && run.ok());
  EXPECT_EQ(client->rfind("client-", 0), 0u);
  EXPECT_EQ(client->size(), 7u + 16u);
  EXPECT_EQ(run->rfind("run-", 0), 0u);
  EXPECT_EQ(run->size(), 4u + 16u);
  EXPECT_EQ(client->find_first_not_of("0123456789abcdef", 7), std::string::npos);
  EXPECT_NE(*NewClientId(), *client);
  absl::StatusOr<std::string> secret = NewClientSecret();
  ASSERT_TRUE(secret.ok());
  EXPECT_EQ(secret->size(), 32u);
}

TEST(StoreIdsTest, HashTokenIsSha256HexAndHidesTheToken) {
  const std::string token = *NewEnrollmentToken();
  const std::string hash = HashToken(token);
  EXPECT_TRUE(IsSha256Hex(hash));
  EXPECT_EQ(hash, internal::Sha256Hex(token));
  EXPECT_EQ(hash.find(token.substr(9, 8)), std::string::npos);
  EXPECT_NE(HashToken(token + "x"), hash);
}

TEST(StoreIdsTest, IsSha256HexAcceptsOnlyLowerCaseHexOf64) {
  const std::string good = internal::Sha256Hex(std::string("abc"));
  EXPECT_TRUE(IsSha256Hex(good));
  EXPECT_FALSE(IsSha256Hex(good.substr(1)));
  EXPECT_FALSE(IsSha256Hex(good + "0"));
  std::string upper = good;
  upper[0] = 'B';
  EXPECT_FALSE(IsSha256Hex(upper));
  EXPECT_FALSE(IsSha256Hex("../../../../etc/passwd" + std::string(42, 'a')));
}

TEST(StoreIdsTest, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secret "));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

}  // namespace
}  // namespace fedfm::coordinator
