#include "aggregation/secagg/shamir.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "protocols/check.h"

namespace fedfm::secagg {
namespace {

constexpr uint64_t kP = kShamirPrime;
// Chunk c of a secret covers bytes [7c, 7c + kChunkBytes[c]).
constexpr int kChunkBytes[kShamirChunks] = {7, 7, 7, 7, 4};

uint64_t Reduce(uint64_t v) {
  // v < 2^62 here; one conditional subtraction after folding.
  v = (v & kP) + (v >> 61);
  return v >= kP ? v - kP : v;
}
uint64_t Add(uint64_t a, uint64_t b) { return Reduce(a + b); }
uint64_t Sub(uint64_t a, uint64_t b) { return a >= b ? a - b : a + kP - b; }
uint64_t Mul(uint64_t a, uint64_t b) {
  const unsigned __int128 r = static_cast<unsigned __int128>(a) * b;  // < 2^122
  const uint64_t lo = static_cast<uint64_t>(r) & kP;
  const uint64_t hi = static_cast<uint64_t>(r >> 61);
  return Reduce(lo + hi);
}
uint64_t Pow(uint64_t base, uint64_t exp) {
  uint64_t result = 1;
  while (exp > 0) {
    if (exp & 1) result = Mul(result, base);
    base = Mul(base, base);
    exp >>= 1;
  }
  return result;
}
uint64_t Inverse(uint64_t a) {
  FEDFM_CHECK(a != 0);
  return Pow(a, kP - 2);  // Fermat
}

absl::StatusOr<uint64_t> RandomElement(RandomSource& rng) {
  while (true) {
    uint8_t bytes[8];
    absl::Status status = rng.Fill(bytes);
    if (!status.ok()) return status;
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{bytes[i]} << (8 * i);
    v &= kP;              // 61 uniform bits
    if (v < kP) return v;  // reject the single value 2^61 - 1
  }
}

absl::Status CheckPoints(std::span<const uint32_t> xs) {
  std::set<uint32_t> seen;
  for (uint32_t x : xs) {
    if (x == 0) return absl::InvalidArgumentError("Shamir: evaluation point 0 would reveal the secret");
    if (!seen.insert(x).second) {
      return absl::InvalidArgumentError(absl::StrCat("Shamir: evaluation point ", x, " repeats"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<ShamirShare>> ShamirSplit(const Key& secret, int threshold,
                                                     std::span<const uint32_t> xs,
                                                     RandomSource& rng) {
  if (threshold < 1 || static_cast<size_t>(threshold) > xs.size()) {
    return absl::InvalidArgumentError(absl::StrCat("Shamir: threshold must be 1..", xs.size(),
                                                   " (the number of shares), got ", threshold));
  }
  absl::Status points = CheckPoints(xs);
  if (!points.ok()) return points;

  std::vector<ShamirShare> shares(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) shares[i].x = xs[i];
  std::vector<uint64_t> coeffs(threshold);
  int offset = 0;
  for (int c = 0; c < kShamirChunks; ++c) {
    uint64_t chunk = 0;
    for (int b = 0; b < kChunkBytes[c]; ++b) chunk |= uint64_t{secret[offset + b]} << (8 * b);
    offset += kChunkBytes[c];
    coeffs[0] = chunk;
    for (int j = 1; j < threshold; ++j) {
      absl::StatusOr<uint64_t> r = RandomElement(rng);
      if (!r.ok()) return r.status();
      coeffs[j] = *r;
    }
    for (ShamirShare& share : shares) {
      // Horner: f(x) = c0 + x (c1 + x (c2 + ...)).
      uint64_t acc = 0;
      for (int j = threshold - 1; j >= 0; --j) acc = Add(Mul(acc, share.x), coeffs[j]);
      share.y[c] = acc;
    }
  }
  std::fill(coeffs.begin(), coeffs.end(), 0);
  return shares;
}

ShareValue ShamirInterpolateAtZero(std::span<const ShamirShare> shares) {
  std::vector<uint32_t> xs;
  for (const ShamirShare& s : shares) xs.push_back(s.x);
  FEDFM_CHECK_MSG(CheckPoints(xs).ok(), "Shamir interpolation needs distinct nonzero points");
  // Lagrange basis at 0: L_i = prod_{j != i} x_j / (x_j - x_i).
  std::vector<uint64_t> basis(shares.size());
  for (size_t i = 0; i < shares.size(); ++i) {
    uint64_t num = 1, den = 1;
    for (size_t j = 0; j < shares.size(); ++j) {
      if (j == i) continue;
      num = Mul(num, shares[j].x);
      den = Mul(den, Sub(shares[j].x, shares[i].x));
    }
    basis[i] = Mul(num, Inverse(den));
  }
  ShareValue result{};
  for (int c = 0; c < kShamirChunks; ++c) {
    uint64_t acc = 0;
    for (size_t i = 0; i < shares.size(); ++i) acc = Add(acc, Mul(shares[i].y[c], basis[i]));
    result[c] = acc;
  }
  return result;
}

absl::StatusOr<Key> ShamirReconstruct(std::span<const ShamirShare> shares, int threshold) {
  if (threshold < 1) {
    return absl::InvalidArgumentError(absl::StrCat("Shamir: threshold must be >= 1, got ", threshold));
  }
  if (shares.size() < static_cast<size_t>(threshold)) {
    return absl::InvalidArgumentError(absl::StrCat("Shamir: ", shares.size(),
                                                   " shares cannot reconstruct a secret of threshold ",
                                                   threshold));
  }
  std::vector<uint32_t> xs;
  for (const ShamirShare& s : shares) {
    xs.push_back(s.x);
    for (uint64_t y : s.y) {
      if (y >= kP) {
        return absl::InvalidArgumentError(
            absl::StrCat("Shamir: share at x = ", s.x, " holds a value outside GF(2^61 - 1)"));
      }
    }
  }
  absl::Status points = CheckPoints(xs);
  if (!points.ok()) return points;

  std::vector<ShamirShare> used(shares.begin(), shares.end());
  std::sort(used.begin(), used.end(),
            [](const ShamirShare& a, const ShamirShare& b) { return a.x < b.x; });
  used.resize(threshold);
  const ShareValue chunks = ShamirInterpolateAtZero(used);

  Key secret{};
  int offset = 0;
  for (int c = 0; c < kShamirChunks; ++c) {
    if (chunks[c] >> (8 * kChunkBytes[c]) != 0) {
      return absl::DataLossError(
          "Shamir: shares do not interpolate to a valid secret (inconsistent shares)");
    }
    for (int b = 0; b < kChunkBytes[c]; ++b) secret[offset + b] = static_cast<uint8_t>(chunks[c] >> (8 * b));
    offset += kChunkBytes[c];
  }
  return secret;
}

void EncodeShareValue(const ShareValue& value, uint8_t* out) {
  for (int c = 0; c < kShamirChunks; ++c) {
    for (int b = 0; b < 8; ++b) out[8 * c + b] = static_cast<uint8_t>(value[c] >> (8 * b));
  }
}

absl::StatusOr<ShareValue> DecodeShareValue(const uint8_t* in) {
  ShareValue value{};
  for (int c = 0; c < kShamirChunks; ++c) {
    uint64_t v = 0;
    for (int b = 0; b < 8; ++b) v |= uint64_t{in[8 * c + b]} << (8 * b);
    if (v >= kP) {
      return absl::InvalidArgumentError(
          absl::StrCat("Shamir share: element ", c, " is not below 2^61 - 1"));
    }
    value[c] = v;
  }
  return value;
}

}  // namespace fedfm::secagg
