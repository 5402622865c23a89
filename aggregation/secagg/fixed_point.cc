#include "aggregation/secagg/fixed_point.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "protocols/check.h"

namespace fedfm::secagg {

absl::Status CheckNoOverflow(int num_clients, double clip, int fraction_bits) {
  if (!(std::isfinite(clip) && clip > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("secagg fixed point: clip c must be a positive finite number, got ", clip));
  }
  if (fraction_bits < 1 || fraction_bits > 30) {
    return absl::InvalidArgumentError(absl::StrCat(
        "secagg fixed point: fraction bits q must be in 1..30, got ", fraction_bits));
  }
  if (num_clients < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("secagg fixed point: number of clients n must be >= 1, got ", num_clients));
  }
  // Exact in double: n < 2^31, c * 2^q only shifts the exponent.
  const double bound = static_cast<double>(num_clients) * std::ldexp(clip, fraction_bits);
  if (!(bound < 2147483648.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "secagg fixed point would overflow: n * c * 2^q = ", num_clients, " * ", clip, " * 2^",
        fraction_bits, " = ", bound, " must be < 2^31 = 2147483648 (n = ", num_clients,
        " clients, clip c = ", clip, ", fraction bits q = ", fraction_bits,
        "); lower q or c, or aggregate fewer clients per group"));
  }
  return absl::OkStatus();
}

absl::StatusOr<FixedPointCodec> FixedPointCodec::Create(double clip, int fraction_bits,
                                                        int max_clients) {
  absl::Status status = CheckNoOverflow(max_clients, clip, fraction_bits);
  if (!status.ok()) return status;
  const int64_t max_encoded = static_cast<int64_t>(std::floor(std::ldexp(clip, fraction_bits)));
  return FixedPointCodec(clip, fraction_bits, max_clients, max_encoded);
}

absl::Status FixedPointCodec::Encode(std::span<const float> values, std::span<uint32_t> out) const {
  FEDFM_CHECK(values.size() == out.size());
  const double scale = std::ldexp(1.0, fraction_bits_);
  const double lo = -static_cast<double>(max_encoded_);
  const double hi = static_cast<double>(max_encoded_);
  for (size_t i = 0; i < values.size(); ++i) {
    const double v = values[i];
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("secagg fixed point: element ", i, " is ", v, ", not a finite number"));
    }
    // Clip, scale and round; the second clamp keeps |encoded| <= floor(c 2^q)
    // when c 2^q is not an integer.
    double scaled = std::round(std::fmin(std::fmax(v, -clip_), clip_) * scale);
    scaled = std::fmin(std::fmax(scaled, lo), hi);
    out[i] = static_cast<uint32_t>(static_cast<int32_t>(scaled));
  }
  return absl::OkStatus();
}

double FixedPointCodec::DecodeOne(uint32_t encoded) const {
  return std::ldexp(static_cast<double>(static_cast<int32_t>(encoded)), -fraction_bits_);
}

void FixedPointCodec::Decode(std::span<const uint32_t> sum, std::span<float> out) const {
  FEDFM_CHECK(sum.size() == out.size());
  const float inv_scale = std::ldexp(1.0f, -fraction_bits_);  // exact power of two
  for (size_t i = 0; i < sum.size(); ++i) {
    out[i] = static_cast<float>(static_cast<int32_t>(sum[i])) * inv_scale;
  }
}

}  // namespace fedfm::secagg
