// X.509 certificates for the coordinator's TLS: its own certificate
// authority, its server certificate, and client certificates issued at
// enrollment from a certificate signing request (CSR) the device made with
// its own key, so private keys never travel.
//
//   coordinator  CreateCertificateAuthority, CreateServerCertificate (first
//                start, into the state directory), SignClientCertificate
//                (Enroll with a CSR: subject CN = the new client id)
//   device       CreateKeyAndCsr (before enrolling)
//
// Keys are ECDSA P-256, signatures SHA-256, everything PEM text. This is the
// project's one home of OpenSSL's X.509 API (besides secagg's crypto.cc for
// the SecAgg+ primitives): it sits at the bottom layer because both sides use
// it, in a target of its own (fedfm::protocols_tls) so that nothing else
// links OpenSSL through it. Thread-safe (no shared state).
#ifndef FEDFM_PROTOCOLS_TLS_CERTS_H_
#define FEDFM_PROTOCOLS_TLS_CERTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace fedfm::protocols::tls {

struct KeyAndCertificate {
  std::string key_pem;          // PKCS#8 private key; keep it 0600
  std::string certificate_pem;
};

struct KeyAndCsr {
  std::string key_pem;
  std::string csr_pem;
};

// A self-signed CA certificate (basicConstraints CA:TRUE, pathlen 0) with
// subject CN = `common_name`, valid for `valid_days` from an hour ago.
absl::StatusOr<KeyAndCertificate> CreateCertificateAuthority(const std::string& common_name, int valid_days);

// A server certificate signed by `ca` (serverAuth) whose subjectAltName lists
// `hosts`: IPv4/IPv6 literals as IP entries, anything else as DNS names.
// InvalidArgument for no hosts; errors of the CA's PEM as ParseError below.
absl::StatusOr<KeyAndCertificate> CreateServerCertificate(const KeyAndCertificate& ca,
                                                          const std::vector<std::string>& hosts, int valid_days);

// A fresh key and a CSR for it, subject CN = `common_name` (the CA ignores
// the subject; it names the certificate after the enrolled client id).
absl::StatusOr<KeyAndCsr> CreateKeyAndCsr(const std::string& common_name);

// A client certificate (clientAuth) for the key of `csr_pem`, signed by
// `ca`, with subject CN and subjectAltName DNS = `common_name`.
// InvalidArgument when the CSR does not parse or its self-signature does not
// verify (the requester does not hold the key).
absl::StatusOr<std::string> SignClientCertificate(const KeyAndCertificate& ca, const std::string& csr_pem,
                                                  const std::string& common_name, int valid_days);

// OK when `csr_pem` parses and its self-signature verifies (what
// SignClientCertificate checks first), so a coordinator can refuse a bad CSR
// before it consumes an enrollment token. InvalidArgument otherwise.
absl::Status CheckCertificateSigningRequest(const std::string& csr_pem);

// The subject CN of a PEM certificate. InvalidArgument when it does not parse.
absl::StatusOr<std::string> CertificateCommonName(const std::string& certificate_pem);

// The SHA-256 fingerprint of a PEM certificate's DER bytes, as upper-case hex
// pairs joined by ':' (what `openssl x509 -fingerprint -sha256` prints).
absl::StatusOr<std::string> CertificateFingerprint(const std::string& certificate_pem);

// OK when `certificate_pem` is signed by the CA of `ca_pem` and valid now.
// InvalidArgument otherwise, with OpenSSL's reason.
absl::Status VerifyCertificate(const std::string& ca_pem, const std::string& certificate_pem);

}  // namespace fedfm::protocols::tls

#endif  // FEDFM_PROTOCOLS_TLS_CERTS_H_
