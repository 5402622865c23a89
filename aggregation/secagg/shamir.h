// Shamir t-of-m secret sharing of 32-byte secrets over GF(p), p = 2^61 - 1.
//
// A secret is cut into 5 little-endian chunks of 7, 7, 7, 7 and 4 bytes (each
// < 2^56 < p) and every chunk is shared with its own random polynomial of
// degree t - 1. A share is the polynomials' values at a public nonzero point
// x (SecAgg+ uses x = holder index + 1), 5 field elements, 40 bytes on the
// wire. Any t shares reconstruct the secret by Lagrange interpolation at 0;
// fewer reveal nothing about it (and interpolate to an unrelated value).
#ifndef FEDFM_AGGREGATION_SECAGG_SHAMIR_H_
#define FEDFM_AGGREGATION_SECAGG_SHAMIR_H_

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "aggregation/secagg/crypto.h"

namespace fedfm::secagg {

inline constexpr uint64_t kShamirPrime = (uint64_t{1} << 61) - 1;
inline constexpr int kShamirChunks = 5;
inline constexpr size_t kShamirShareBytes = kShamirChunks * 8;

using ShareValue = std::array<uint64_t, kShamirChunks>;  // each element < kShamirPrime

struct ShamirShare {
  uint32_t x = 0;  // evaluation point, nonzero
  ShareValue y{};
};

// Shares `secret` at the points `xs` (distinct, nonzero) so that any
// `threshold` of the shares reconstruct it. Coefficients are drawn uniformly
// from GF(p) with `rng`. InvalidArgument if threshold is outside
// 1..xs.size() or the points are not distinct and nonzero.
absl::StatusOr<std::vector<ShamirShare>> ShamirSplit(const Key& secret, int threshold,
                                                     std::span<const uint32_t> xs,
                                                     RandomSource& rng);

// Reconstructs a secret from at least `threshold` shares, interpolating
// through the `threshold` shares of smallest x. InvalidArgument if fewer
// shares are given, points repeat or are zero, or a value is outside the
// field; DataLoss if the interpolated chunks are not a valid secret encoding
// (shares of different secrets, or too low a threshold was assumed; this
// catches a wrong result with probability 1 - 2^-25).
absl::StatusOr<Key> ShamirReconstruct(std::span<const ShamirShare> shares, int threshold);

// The interpolation at 0 through ALL given shares, chunk by chunk, with no
// validation of the result: the raw field values behind ShamirReconstruct.
// Requires distinct nonzero points (checked).
ShareValue ShamirInterpolateAtZero(std::span<const ShamirShare> shares);

// Wire form of a share value: 5 little-endian uint64 (40 bytes).
void EncodeShareValue(const ShareValue& value, uint8_t* out);
// InvalidArgument if a value is not below p.
absl::StatusOr<ShareValue> DecodeShareValue(const uint8_t* in);

}  // namespace fedfm::secagg

#endif  // FEDFM_AGGREGATION_SECAGG_SHAMIR_H_
