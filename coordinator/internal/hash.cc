#include "coordinator/internal/hash.h"

#include <cstdint>

#include "aggregation/secagg/crypto.h"

namespace fedfm::coordinator::internal {

std::string Sha256Hex(std::span<const std::byte> bytes) {
  const secagg::Key digest =
      secagg::Sha256(secagg::ByteSpan(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex(2 * digest.size(), '\0');
  for (size_t i = 0; i < digest.size(); ++i) {
    hex[2 * i] = kHex[digest[i] >> 4];
    hex[2 * i + 1] = kHex[digest[i] & 0xf];
  }
  return hex;
}

std::string Sha256Hex(std::string_view bytes) {
  return Sha256Hex(std::as_bytes(std::span(bytes.data(), bytes.size())));
}

}  // namespace fedfm::coordinator::internal
