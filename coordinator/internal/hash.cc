#include "coordinator/internal/hash.h"

#include <cstdint>

#include "absl/strings/escaping.h"
#include "aggregation/secagg/crypto.h"

namespace fedfm::coordinator::internal {

std::string Sha256Hex(std::span<const std::byte> bytes) {
  const secagg::Key digest =
      secagg::Sha256(secagg::ByteSpan(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

std::string Sha256Hex(std::string_view bytes) {
  return Sha256Hex(std::as_bytes(std::span(bytes.data(), bytes.size())));
}

}  // namespace fedfm::coordinator::internal
