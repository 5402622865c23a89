#include "coordinator/ids.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "aggregation/secagg/crypto.h"
#include "coordinator/internal/hash.h"

namespace fedfm::coordinator {
namespace {

// RFC 4648 section 5 alphabet, no padding.
std::string Base64Url(const std::string& bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 0x3f]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 0x3f]);
  return out;
}

absl::StatusOr<std::string> PrefixedHexId(const char* prefix) {
  absl::StatusOr<std::string> bytes = RandomBytes(8);
  if (!bytes.ok()) return bytes.status();
  return absl::StrCat(prefix, absl::BytesToHexString(*bytes));
}

}  // namespace

absl::StatusOr<std::string> RandomBytes(size_t n) {
  std::string out(n, '\0');
  size_t filled = 0;
  while (filled < n) {
    // Flags 0: the urandom pool, blocking only until it is first seeded.
    ssize_t got = ::getrandom(out.data() + filled, n - filled, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("getrandom(", n, " bytes) failed: ", std::strerror(errno)));
    }
    filled += static_cast<size_t>(got);
  }
  return out;
}

absl::StatusOr<std::string> NewEnrollmentToken() {
  absl::StatusOr<std::string> bytes = RandomBytes(32);
  if (!bytes.ok()) return bytes.status();
  return absl::StrCat("fedfm_et_", Base64Url(*bytes));
}

absl::StatusOr<std::string> NewClientId() { return PrefixedHexId("client-"); }

absl::StatusOr<std::string> NewRunId() { return PrefixedHexId("run-"); }

absl::StatusOr<std::string> NewClientSecret() { return RandomBytes(32); }

std::string HashToken(const std::string& token) { return internal::Sha256Hex(token); }

bool IsSha256Hex(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  return secagg::ConstantTimeEquals(secagg::ByteSpan(reinterpret_cast<const uint8_t*>(a.data()), a.size()),
                                    secagg::ByteSpan(reinterpret_cast<const uint8_t*>(b.data()), b.size()));
}

}  // namespace fedfm::coordinator
