#include "protocols/tls_certs.h"

#include <gtest/gtest.h>

#include <string>

namespace fedfm::protocols::tls {
namespace {

TEST(TlsCertsTest, IssuesServerAndClientCertificatesTheCaVerifies) {
  absl::StatusOr<KeyAndCertificate> ca = CreateCertificateAuthority("fedfm test CA", 30);
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_NE(ca->key_pem.find("BEGIN PRIVATE KEY"), std::string::npos);
  EXPECT_TRUE(VerifyCertificate(ca->certificate_pem, ca->certificate_pem).ok());

  absl::StatusOr<KeyAndCertificate> server = CreateServerCertificate(*ca, {"localhost", "127.0.0.1", "::1"}, 30);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE(VerifyCertificate(ca->certificate_pem, server->certificate_pem).ok());
  EXPECT_EQ(*CertificateCommonName(server->certificate_pem), "localhost");

  absl::StatusOr<KeyAndCsr> csr = CreateKeyAndCsr("whatever-the-device-asks");
  ASSERT_TRUE(csr.ok()) << csr.status();
  absl::StatusOr<std::string> client = SignClientCertificate(*ca, csr->csr_pem, "client-0123456789abcdef", 30);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(*CertificateCommonName(*client), "client-0123456789abcdef");  // the CA names it, not the CSR
  EXPECT_TRUE(VerifyCertificate(ca->certificate_pem, *client).ok());

  absl::StatusOr<KeyAndCertificate> other_ca = CreateCertificateAuthority("another CA", 30);
  ASSERT_TRUE(other_ca.ok());
  absl::Status wrong = VerifyCertificate(other_ca->certificate_pem, *client);
  EXPECT_EQ(wrong.code(), absl::StatusCode::kInvalidArgument);
}

TEST(TlsCertsTest, RefusesBadCsrsAndMismatchedKeys) {
  absl::StatusOr<KeyAndCertificate> ca = CreateCertificateAuthority("ca", 1);
  ASSERT_TRUE(ca.ok());
  EXPECT_EQ(SignClientCertificate(*ca, "not a csr", "c", 1).status().code(), absl::StatusCode::kInvalidArgument);

  absl::StatusOr<KeyAndCsr> csr = CreateKeyAndCsr("x");
  ASSERT_TRUE(csr.ok());
  // Flip one base64 character inside the signature area: the self-signature
  // (or the parse) fails.
  std::string tampered = csr->csr_pem;
  size_t pos = tampered.find("-----END") - 10;
  tampered[pos] = tampered[pos] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(SignClientCertificate(*ca, tampered, "c", 1).ok());
  EXPECT_FALSE(CheckCertificateSigningRequest(tampered).ok());
  EXPECT_TRUE(CheckCertificateSigningRequest(csr->csr_pem).ok());

  absl::StatusOr<KeyAndCertificate> other = CreateCertificateAuthority("other", 1);
  ASSERT_TRUE(other.ok());
  KeyAndCertificate mixed{other->key_pem, ca->certificate_pem};
  absl::StatusOr<std::string> signed_by_mixed = SignClientCertificate(mixed, csr->csr_pem, "c", 1);
  EXPECT_EQ(signed_by_mixed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(CreateServerCertificate(*ca, {}, 1).ok());
  EXPECT_FALSE(CreateCertificateAuthority("ca", 0).ok());
}

TEST(TlsCertsTest, FingerprintIsSha256OfTheDerInColonHex) {
  absl::StatusOr<KeyAndCertificate> ca = CreateCertificateAuthority("ca", 1);
  ASSERT_TRUE(ca.ok());
  absl::StatusOr<std::string> fp = CertificateFingerprint(ca->certificate_pem);
  ASSERT_TRUE(fp.ok());
  ASSERT_EQ(fp->size(), 32u * 3 - 1);
  for (size_t i = 0; i < fp->size(); ++i) {
    if (i % 3 == 2) {
      EXPECT_EQ((*fp)[i], ':');
    } else {
      EXPECT_TRUE(std::isxdigit((*fp)[i]) && !std::islower((*fp)[i])) << *fp;
    }
  }
  absl::StatusOr<KeyAndCertificate> ca2 = CreateCertificateAuthority("ca", 1);
  EXPECT_NE(*CertificateFingerprint(ca2->certificate_pem), *fp);
  EXPECT_FALSE(CertificateFingerprint("junk").ok());
}

}  // namespace
}  // namespace fedfm::protocols::tls
