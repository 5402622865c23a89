// SHA-256 as lower-case hex, the form in which the coordinator's store names
// model files and keeps token hashes. A thin adapter over
// aggregation/secagg/crypto.h (the one place that reaches OpenSSL).
#ifndef FEDFM_COORDINATOR_INTERNAL_HASH_H_
#define FEDFM_COORDINATOR_INTERNAL_HASH_H_

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace fedfm::coordinator::internal {

// Lower-case hex SHA-256 (64 characters) of `bytes`.
std::string Sha256Hex(std::span<const std::byte> bytes);
std::string Sha256Hex(std::string_view bytes);

}  // namespace fedfm::coordinator::internal

#endif  // FEDFM_COORDINATOR_INTERNAL_HASH_H_
