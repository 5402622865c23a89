// Identifiers and secrets of the coordinator: random ids for runs and
// clients, enrollment tokens, client secrets, and the form in which the store
// keeps tokens (their SHA-256, never the token itself).
//
// Randomness comes from the kernel CSPRNG through getrandom(2), never from a
// seeded generator: these values guard access, they are not simulation draws.
// Thread-safe.
#ifndef FEDFM_COORDINATOR_IDS_H_
#define FEDFM_COORDINATOR_IDS_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"

namespace fedfm::coordinator {

// `n` bytes from getrandom(2). Internal error (with errno's text) when the
// kernel cannot supply them (a kernel without getrandom, a seccomp filter).
absl::StatusOr<std::string> RandomBytes(size_t n);

// An enrollment token for `fedfm enroll`: "fedfm_et_" followed by 43
// base64url characters (256 random bits). Safe to paste into a shell.
absl::StatusOr<std::string> NewEnrollmentToken();

// A client id: "client-" followed by 16 lower-case hex characters (64 random
// bits). Ids are public; the store refuses a duplicate (AlreadyExists), so a
// caller may simply draw again.
absl::StatusOr<std::string> NewClientId();

// A run id: "run-" followed by 16 lower-case hex characters.
absl::StatusOr<std::string> NewRunId();

// 32 random bytes: the HMAC-SHA256 key a client signs its requests with
// (EnrollResponse.client_secret).
absl::StatusOr<std::string> NewClientSecret();

// What the store keeps of an enrollment token: its lower-case hex SHA-256.
// A plain hash suffices (no salt, no slow KDF) because tokens carry 256
// random bits; they cannot be guessed from the hash.
std::string HashToken(const std::string& token);

// True when `s` is 64 lower-case hex characters (the form of every SHA-256 the
// store hands out and accepts).
bool IsSha256Hex(const std::string& s);

// Compares secrets in time independent of where they first differ (false
// when the lengths differ; the length itself is not hidden).
bool ConstantTimeEquals(const std::string& a, const std::string& b);

}  // namespace fedfm::coordinator

#endif  // FEDFM_COORDINATOR_IDS_H_
