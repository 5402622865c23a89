// Fixed-point encoding of float updates into Z_{2^32}, the ring SecAgg+ sums
// in. A value v becomes round(clamp(v, -c, c) * 2^q), clamped again to
// +-floor(c * 2^q), stored as two's complement uint32. The sum of n such
// values is exact as long as it stays inside the signed 32-bit range, which
// Create() guarantees by requiring n * c * 2^q < 2^31: decoding then reads
// the modular sum as int32 and divides by 2^q.
//
// Resolution is 2^-q per client value; the rounding error of a sum of n
// values is at most n * 2^-(q+1).
#ifndef FEDFM_AGGREGATION_SECAGG_FIXED_POINT_H_
#define FEDFM_AGGREGATION_SECAGG_FIXED_POINT_H_

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedfm::secagg {

// OK when n clients' values in [-clip, clip] at scale 2^fraction_bits can be
// summed without leaving the signed 32-bit range: n * clip * 2^q < 2^31.
// InvalidArgument naming n, c and q otherwise (or when clip is not a positive
// finite number, q is outside 1..30, or n < 1).
absl::Status CheckNoOverflow(int num_clients, double clip, int fraction_bits);

// Immutable; thread-safe.
class FixedPointCodec {
 public:
  // InvalidArgument as CheckNoOverflow for (max_clients, clip, fraction_bits).
  static absl::StatusOr<FixedPointCodec> Create(double clip, int fraction_bits, int max_clients);

  double clip() const { return clip_; }
  int fraction_bits() const { return fraction_bits_; }
  int max_clients() const { return max_clients_; }
  // The largest encoded magnitude, floor(clip * 2^q).
  int64_t max_encoded() const { return max_encoded_; }

  // Encodes values[i] into out[i] (equal sizes; checked). InvalidArgument
  // naming the first element that is NaN or infinite. Values beyond +-clip are
  // clipped.
  absl::Status Encode(std::span<const float> values, std::span<uint32_t> out) const;
  // Decodes a sum of at most max_clients encodings (equal sizes; checked).
  void Decode(std::span<const uint32_t> sum, std::span<float> out) const;
  // One encoded value or sum as a double (no float rounding), for tests.
  double DecodeOne(uint32_t encoded) const;

 private:
  FixedPointCodec(double clip, int fraction_bits, int max_clients, int64_t max_encoded)
      : clip_(clip), fraction_bits_(fraction_bits), max_clients_(max_clients),
        max_encoded_(max_encoded) {}

  double clip_;
  int fraction_bits_;
  int max_clients_;
  int64_t max_encoded_;
};

}  // namespace fedfm::secagg

#endif  // FEDFM_AGGREGATION_SECAGG_FIXED_POINT_H_
