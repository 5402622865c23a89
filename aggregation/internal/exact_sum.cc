#include "aggregation/internal/exact_sum.h"

#include <bit>
#include <cmath>

#include "protocols/check.h"

namespace fedfm::aggregation::internal {
namespace {

// Significant bits a window may hold: two aligned operands of <= 125 bits sum
// to < 2^126, still far from the int128 sign bit.
constexpr int kWindowBits = 125;
constexpr int kWideLsbExponent = -149;  // smallest float32 subnormal

int BitLength(UInt128 x) {
  auto hi = static_cast<uint64_t>(x >> 64);
  auto lo = static_cast<uint64_t>(x);
  if (hi != 0) return 128 - std::countl_zero(hi);
  if (lo != 0) return 64 - std::countl_zero(lo);
  return 0;
}

int TrailingZeros(UInt128 x) {  // x != 0
  auto lo = static_cast<uint64_t>(x);
  if (lo != 0) return std::countr_zero(lo);
  return 64 + std::countr_zero(static_cast<uint64_t>(x >> 64));
}

UInt128 Magnitude(Int128 x) { return x < 0 ? -static_cast<UInt128>(x) : static_cast<UInt128>(x); }

}  // namespace

double RoundToDouble(bool negative, const uint64_t* magnitude, int num_limbs, int exponent) {
  int h = num_limbs - 1;
  while (h >= 0 && magnitude[h] == 0) --h;
  if (h < 0) return 0.0;
  const int top_bit = h * 64 + 63 - std::countl_zero(magnitude[h]);
  double r;
  if (top_bit < 64) {
    r = std::ldexp(static_cast<double>(magnitude[0]), exponent);
  } else {
    // The 64 bits ending at top_bit, with every lower bit folded into bit 0
    // ("sticky"): converting that to double rounds exactly as the full value
    // would, since bit 0 lies below the 53-bit mantissa and its round bit.
    const int low_bit = top_bit - 63;
    const int w = low_bit / 64, b = low_bit % 64;
    uint64_t top = magnitude[w] >> b;
    if (b != 0) top |= magnitude[w + 1] << (64 - b);
    bool sticky = b != 0 && (magnitude[w] & ((uint64_t{1} << b) - 1)) != 0;
    for (int j = 0; j < w && !sticky; ++j) sticky = magnitude[j] != 0;
    if (sticky) top |= 1;
    // Scaling by a power of two is exact here: values are >= 2^-149, far
    // above the double subnormal range.
    r = std::ldexp(static_cast<double>(top), low_bit + exponent);
  }
  return negative ? -r : r;
}

void WideAccumulator::Add(Int128 value, int exponent) {
  const int pos = exponent - kWideLsbExponent;
  FEDFM_CHECK(pos >= 0);
  // value sign-extended to 7 limbs, shifted left by pos, added mod 2^384.
  uint64_t src[7];
  src[0] = static_cast<uint64_t>(static_cast<UInt128>(value));
  src[1] = static_cast<uint64_t>(static_cast<UInt128>(value) >> 64);
  const uint64_t ext = value < 0 ? ~uint64_t{0} : 0;
  for (int k = 2; k < 7; ++k) src[k] = ext;
  const int w = pos / 64, b = pos % 64;
  uint64_t carry = 0;
  for (int k = 0; k < 6; ++k) {
    uint64_t s = 0;
    const int j = k - w;
    if (j >= 0) {
      s = src[j] << b;
      if (b != 0 && j >= 1) s |= src[j - 1] >> (64 - b);
    }
    UInt128 t = static_cast<UInt128>(limbs[k]) + s + carry;
    limbs[k] = static_cast<uint64_t>(t);
    carry = static_cast<uint64_t>(t >> 64);
  }
}

double WideAccumulator::ToDouble() const {
  const bool negative = (limbs[5] >> 63) != 0;
  uint64_t mag[6];
  uint64_t carry = 1;
  for (int k = 0; k < 6; ++k) {
    if (negative) {
      UInt128 t = static_cast<UInt128>(~limbs[k]) + carry;
      mag[k] = static_cast<uint64_t>(t);
      carry = static_cast<uint64_t>(t >> 64);
    } else {
      mag[k] = limbs[k];
    }
  }
  return RoundToDouble(negative, mag, 6, kWideLsbExponent);
}

ExactSumVector::ExactSumVector(int64_t size) : mantissa_(size, 0), exponent_(size, 0) {}

void ExactSumVector::Spill(int64_t i) {
  WideAccumulator& w = wide_[i];
  if (mantissa_[i] != 0) w.Add(mantissa_[i], exponent_[i]);
  mantissa_[i] = 0;
  exponent_[i] = kSpilled;
}

void ExactSumVector::Add(int64_t i, float value, uint64_t weight) {
  if (value == 0.0f || weight == 0) return;
  FEDFM_CHECK(std::isfinite(value));
  const auto bits = std::bit_cast<uint32_t>(value);
  const bool negative = (bits >> 31) != 0;
  const int biased = static_cast<int>((bits >> 23) & 0xFF);
  const uint32_t fraction = bits & 0x7FFFFF;
  // value = m * 2^e exactly, m < 2^24.
  const uint64_t m = biased == 0 ? fraction : (fraction | 0x800000u);
  int e = biased == 0 ? -149 : biased - 150;
  UInt128 p = static_cast<UInt128>(m) * weight;  // < 2^88
  const int tz = TrailingZeros(p);
  p >>= tz;
  e += tz;
  const Int128 sp = negative ? -static_cast<Int128>(p) : static_cast<Int128>(p);

  int16_t& f = exponent_[i];
  if (f == kSpilled) {
    wide_[i].Add(sp, e);
    return;
  }
  Int128& a = mantissa_[i];
  if (a == 0) {
    a = sp;
    f = static_cast<int16_t>(e);
    return;
  }
  if (e >= f) {
    const int d = e - f;
    if (BitLength(p) + d > kWindowBits) {
      Spill(i);
      wide_[i].Add(sp, e);
      return;
    }
    a += sp << d;
  } else {
    const int d = f - e;
    if (BitLength(Magnitude(a)) + d > kWindowBits) {
      Spill(i);
      wide_[i].Add(sp, e);
      return;
    }
    a = (a << d) + sp;
    f = static_cast<int16_t>(e);
  }
  if (a == 0) {
    f = 0;
    return;
  }
  const int strip = TrailingZeros(static_cast<UInt128>(a));
  a >>= strip;  // exact: the stripped bits are zero
  f = static_cast<int16_t>(f + strip);
  if (BitLength(Magnitude(a)) > kWindowBits) Spill(i);
}

double ExactSumVector::Get(int64_t i) const {
  if (exponent_[i] == kSpilled) return wide_.at(i).ToDouble();
  const Int128 a = mantissa_[i];
  if (a == 0) return 0.0;
  const UInt128 mag = Magnitude(a);
  const uint64_t limbs[2] = {static_cast<uint64_t>(mag), static_cast<uint64_t>(mag >> 64)};
  return RoundToDouble(a < 0, limbs, 2, exponent_[i]);
}

}  // namespace fedfm::aggregation::internal
