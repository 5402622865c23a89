#include "protocols/tls_certs.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "protocols/status_macros.h"

namespace fedfm::protocols::tls {
namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using X509Req = std::unique_ptr<X509_REQ, Deleter<X509_REQ, X509_REQ_free>>;
using Bio = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using Bignum = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;
using Extension = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;
using StoreCtx = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;
using CertStore = std::unique_ptr<X509_STORE, Deleter<X509_STORE, X509_STORE_free>>;

// OpenSSL's queued errors as one line, clearing the queue.
std::string OpenSslReason() {
  std::string out;
  unsigned long code;
  while ((code = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown error" : out;
}

absl::Status OpenSslError(const std::string& what) {
  return absl::InternalError(absl::StrCat("OpenSSL ", what, ": ", OpenSslReason()));
}

absl::StatusOr<Pkey> NewP256Key() {
  Pkey key(EVP_EC_gen("P-256"));
  if (!key) return OpenSslError("EC P-256 key generation");
  return key;
}

Bio MemBio(const std::string& text) { return Bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size()))); }

std::string BioText(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, n > 0 ? static_cast<size_t>(n) : 0);
}

absl::StatusOr<std::string> KeyPem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslError("writing a private key");
  }
  return BioText(bio.get());
}

absl::StatusOr<std::string> CertPem(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return OpenSslError("writing a certificate");
  return BioText(bio.get());
}

absl::StatusOr<X509Ptr> ParseCert(const std::string& pem, const char* what) {
  Bio bio = MemBio(pem);
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert) return absl::InvalidArgumentError(absl::StrCat(what, ": not a PEM certificate (", OpenSslReason(), ")"));
  return cert;
}

absl::StatusOr<Pkey> ParseKey(const std::string& pem, const char* what) {
  Bio bio = MemBio(pem);
  Pkey key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key) return absl::InvalidArgumentError(absl::StrCat(what, ": not a PEM private key (", OpenSslReason(), ")"));
  return key;
}

struct Ca {
  X509Ptr cert;
  Pkey key;
};

absl::StatusOr<Ca> ParseCa(const KeyAndCertificate& ca) {
  Ca out;
  FEDFM_ASSIGN_OR_RETURN(out.cert, ParseCert(ca.certificate_pem, "CA certificate"));
  FEDFM_ASSIGN_OR_RETURN(out.key, ParseKey(ca.key_pem, "CA key"));
  if (X509_check_private_key(out.cert.get(), out.key.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("the CA key does not belong to the CA certificate (",
                                                   OpenSslReason(), ")"));
  }
  return out;
}

absl::Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  Extension ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return OpenSslError(absl::StrCat("extension ", OBJ_nid2sn(nid), " = ", value));
  }
  return absl::OkStatus();
}

// A certificate for `key` named `common_name`, valid from an hour ago for
// `valid_days`, with a random 127-bit serial; the issuer is `issuer` (null:
// self-issued). Not yet signed.
absl::StatusOr<X509Ptr> NewCertificate(EVP_PKEY* key, const std::string& common_name, X509* issuer,
                                       int valid_days) {
  if (valid_days < 1) return absl::InvalidArgumentError(absl::StrCat("valid_days must be >= 1, got ", valid_days));
  X509Ptr cert(X509_new());
  Bignum serial(BN_new());
  if (!cert || !serial || X509_set_version(cert.get(), 2) != 1 ||
      BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr ||
      X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), int64_t{valid_days} * 86400) == nullptr ||
      X509_set_pubkey(cert.get(), key) != 1) {
    return OpenSslError("creating a certificate");
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("fedfm"), -1, -1,
                                 0) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0) != 1) {
    return OpenSslError(absl::StrCat("subject CN = \"", common_name, "\""));
  }
  if (X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name) != 1) {
    return OpenSslError("issuer name");
  }
  return cert;
}

absl::Status Sign(X509* cert, EVP_PKEY* key) {
  if (X509_sign(cert, key, EVP_sha256()) <= 0) return OpenSslError("signing a certificate");
  return absl::OkStatus();
}

bool IsIpLiteral(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

absl::StatusOr<KeyAndCertificate> CreateCertificateAuthority(const std::string& common_name, int valid_days) {
  FEDFM_ASSIGN_OR_RETURN(Pkey key, NewP256Key());
  FEDFM_ASSIGN_OR_RETURN(X509Ptr cert, NewCertificate(key.get(), common_name, nullptr, valid_days));
  FEDFM_RETURN_IF_ERROR(AddExtension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
  FEDFM_RETURN_IF_ERROR(AddExtension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign"));
  FEDFM_RETURN_IF_ERROR(AddExtension(cert.get(), cert.get(), NID_subject_key_identifier, "hash"));
  FEDFM_RETURN_IF_ERROR(Sign(cert.get(), key.get()));
  KeyAndCertificate out;
  FEDFM_ASSIGN_OR_RETURN(out.key_pem, KeyPem(key.get()));
  FEDFM_ASSIGN_OR_RETURN(out.certificate_pem, CertPem(cert.get()));
  return out;
}

absl::StatusOr<KeyAndCertificate> CreateServerCertificate(const KeyAndCertificate& ca,
                                                          const std::vector<std::string>& hosts, int valid_days) {
  if (hosts.empty()) return absl::InvalidArgumentError("a server certificate needs at least one host name");
  FEDFM_ASSIGN_OR_RETURN(Ca issuer, ParseCa(ca));
  FEDFM_ASSIGN_OR_RETURN(Pkey key, NewP256Key());
  FEDFM_ASSIGN_OR_RETURN(X509Ptr cert, NewCertificate(key.get(), hosts.front(), issuer.cert.get(), valid_days));
  std::vector<std::string> names;
  for (const std::string& host : hosts) names.push_back(absl::StrCat(IsIpLiteral(host) ? "IP:" : "DNS:", host));
  FEDFM_RETURN_IF_ERROR(AddExtension(cert.get(), issuer.cert.get(), NID_basic_constraints, "critical,CA:FALSE"));
  FEDFM_RETURN_IF_ERROR(
      AddExtension(cert.get(), issuer.cert.get(), NID_key_usage, "critical,digitalSignature,keyEncipherment"));
  FEDFM_RETURN_IF_ERROR(AddExtension(cert.get(), issuer.cert.get(), NID_ext_key_usage, "serverAuth"));
  FEDFM_RETURN_IF_ERROR(AddExtension(cert.get(), issuer.cert.get(), NID_subject_alt_name, absl::StrJoin(names, ",")));
  FEDFM_RETURN_IF_ERROR(AddExtension(cert.get(), issuer.cert.get(), NID_authority_key_identifier, "keyid:always"));
  FEDFM_RETURN_IF_ERROR(Sign(cert.get(), issuer.key.get()));
  KeyAndCertificate out;
  FEDFM_ASSIGN_OR_RETURN(out.key_pem, KeyPem(key.get()));
  FEDFM_ASSIGN_OR_RETURN(out.certificate_pem, CertPem(cert.get()));
  return out;
}

absl::StatusOr<KeyAndCsr> CreateKeyAndCsr(const std::string& common_name) {
  FEDFM_ASSIGN_OR_RETURN(Pkey key, NewP256Key());
  X509Req req(X509_REQ_new());
  if (!req || X509_REQ_set_version(req.get(), 0) != 1) return OpenSslError("creating a CSR");
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0) != 1 ||
      X509_REQ_set_pubkey(req.get(), key.get()) != 1 || X509_REQ_sign(req.get(), key.get(), EVP_sha256()) <= 0) {
    return OpenSslError("signing a CSR");
  }
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_REQ(bio.get(), req.get()) != 1) return OpenSslError("writing a CSR");
  KeyAndCsr out;
  out.csr_pem = BioText(bio.get());
  FEDFM_ASSIGN_OR_RETURN(out.key_pem, KeyPem(key.get()));
  return out;
}

namespace {

// The CSR of `csr_pem` once its self-signature verified.
absl::StatusOr<X509Req> ParseVerifiedCsr(const std::string& csr_pem) {
  Bio bio = MemBio(csr_pem);
  X509Req req(bio ? PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!req) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate_signing_request: not a PEM CSR (", OpenSslReason(), ")"));
  }
  EVP_PKEY* key = X509_REQ_get0_pubkey(req.get());
  if (key == nullptr || X509_REQ_verify(req.get(), key) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate_signing_request: its signature does not verify (", OpenSslReason(), ")"));
  }
  return req;
}

}  // namespace

absl::Status CheckCertificateSigningRequest(const std::string& csr_pem) {
  return ParseVerifiedCsr(csr_pem).status();
}

absl::StatusOr<std::string> SignClientCertificate(const KeyAndCertificate& ca, const std::string& csr_pem,
                                                  const std::string& common_name, int valid_days) {
  FEDFM_ASSIGN_OR_RETURN(Ca issuer, ParseCa(ca));
  FEDFM_ASSIGN_OR_RETURN(X509Req req, ParseVerifiedCsr(csr_pem));
  EVP_PKEY* key = X509_REQ_get0_pubkey(req.get());
  FEDFM_ASSIGN_OR_RETURN(X509Ptr cert, NewCertificate(key, common_name, issuer.cert.get(), valid_days));
  FEDFM_RETURN_IF_ERROR(AddExtension(cert.get(), issuer.cert.get(), NID_basic_constraints, "critical,CA:FALSE"));
  FEDFM_RETURN_IF_ERROR(AddExtension(cert.get(), issuer.cert.get(), NID_key_usage, "critical,digitalSignature"));
  FEDFM_RETURN_IF_ERROR(AddExtension(cert.get(), issuer.cert.get(), NID_ext_key_usage, "clientAuth"));
  FEDFM_RETURN_IF_ERROR(
      AddExtension(cert.get(), issuer.cert.get(), NID_subject_alt_name, absl::StrCat("DNS:", common_name)));
  FEDFM_RETURN_IF_ERROR(AddExtension(cert.get(), issuer.cert.get(), NID_authority_key_identifier, "keyid:always"));
  FEDFM_RETURN_IF_ERROR(Sign(cert.get(), issuer.key.get()));
  return CertPem(cert.get());
}

absl::StatusOr<std::string> CertificateCommonName(const std::string& certificate_pem) {
  FEDFM_ASSIGN_OR_RETURN(X509Ptr cert, ParseCert(certificate_pem, "certificate"));
  char buf[256];
  int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, buf, sizeof(buf));
  if (n < 0) return absl::InvalidArgumentError("certificate: the subject has no CN");
  return std::string(buf, n);
}

absl::StatusOr<std::string> CertificateFingerprint(const std::string& certificate_pem) {
  FEDFM_ASSIGN_OR_RETURN(X509Ptr cert, ParseCert(certificate_pem, "certificate"));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (X509_digest(cert.get(), EVP_sha256(), md, &n) != 1) return OpenSslError("certificate digest");
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    char hex[4];
    std::snprintf(hex, sizeof(hex), "%02X", md[i]);
    if (i > 0) out += ':';
    out += hex;
  }
  return out;
}

absl::Status VerifyCertificate(const std::string& ca_pem, const std::string& certificate_pem) {
  FEDFM_ASSIGN_OR_RETURN(X509Ptr ca, ParseCert(ca_pem, "CA certificate"));
  FEDFM_ASSIGN_OR_RETURN(X509Ptr cert, ParseCert(certificate_pem, "certificate"));
  CertStore store(X509_STORE_new());
  StoreCtx ctx(X509_STORE_CTX_new());
  if (!store || !ctx || X509_STORE_add_cert(store.get(), ca.get()) != 1 ||
      X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr) != 1) {
    return OpenSslError("certificate store");
  }
  if (X509_verify_cert(ctx.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "certificate does not verify: ", X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()))));
  }
  return absl::OkStatus();
}

}  // namespace fedfm::protocols::tls
