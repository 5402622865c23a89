#include "aggregation/internal/exact_sum.h"

#include <algorithm>
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
  // value * weight = p * 2^e exactly, p < 2^88.
  const uint64_t m = biased == 0 ? fraction : (fraction | 0x800000u);
  const int e = biased == 0 ? -149 : biased - 150;
  const UInt128 p = static_cast<UInt128>(m) * weight;

  int16_t& f = exponent_[i];
  if (f == kSpilled) {
    wide_[i].Add(negative ? -static_cast<Int128>(p) : static_cast<Int128>(p), e);
    return;
  }
  Int128& a = mantissa_[i];
  // Align both operands at the lower exponent. The window is not kept
  // normalised on this hot path; trailing zeros are stripped only when an
  // operand would not fit.
  const int fa = a == 0 ? e : f;
  const int lo = std::min(e, fa);
  const int sa = fa - lo, sp = e - lo;
  if (BitLength(Magnitude(a)) + sa > kWindowBits || BitLength(p) + sp > kWindowBits) {
    AddSlow(i, negative, p, e);
    return;
  }
  const UInt128 ps = p << sp;
  a = (a << sa) + (negative ? -static_cast<Int128>(ps) : static_cast<Int128>(ps));
  f = static_cast<int16_t>(lo);
}

void ExactSumVector::AddRange(int64_t begin, std::span<const float> values, uint64_t weight) {
  FEDFM_CHECK(begin >= 0 && begin + static_cast<int64_t>(values.size()) <= size());
  if (weight == 0) return;
  // Upper bound on the bits of m * weight.
  const int p_bits = 24 + static_cast<int>(std::bit_width(weight));
  Int128* mantissa = mantissa_.data() + begin;
  int16_t* exponent = exponent_.data() + begin;
  for (size_t k = 0; k < values.size(); ++k) {
    const float value = values[k];
    if (value == 0.0f) continue;
    const auto bits = std::bit_cast<uint32_t>(value);
    const int biased = static_cast<int>((bits >> 23) & 0xFF);
    const int f = exponent[k];
    const Int128 a = mantissa[k];
    const int e = biased == 0 ? -149 : biased - 150;
    // Fast path: the window is in use, not spilled, the new value's exponent
    // is at or above its LSB, the shifted product fits, and so does the sum
    // (kept below 2^123 so the general path's checks always hold).
    if (biased != 0xFF && a != 0 && f != kSpilled && e >= f && p_bits + (e - f) <= 123) {
      const uint32_t fraction = bits & 0x7FFFFF;
      const uint64_t m = biased == 0 ? fraction : (fraction | 0x800000u);
      const UInt128 shifted = (static_cast<UInt128>(m) * weight) << (e - f);
      // Branch-free sign (signs are random): x ^ -1 + 1 = -x.
      const UInt128 negate = static_cast<UInt128>(0) - static_cast<UInt128>(bits >> 31);
      const Int128 sum = a + static_cast<Int128>((shifted ^ negate) - negate);
      const auto top = static_cast<int64_t>(static_cast<uint64_t>(static_cast<UInt128>(sum) >> 64)) >> 59;
      if (top == 0 || top == -1) {
        mantissa[k] = sum;
        continue;
      }
    }
    Add(begin + static_cast<int64_t>(k), value, weight);
  }
}

void ExactSumVector::AddSlow(int64_t i, bool negative, UInt128 p, int e) {
  Int128& a = mantissa_[i];
  int16_t& f = exponent_[i];
  // Normalise both operands and retry the window once.
  const int tp = TrailingZeros(p);
  p >>= tp;
  e += tp;
  if (a != 0) {
    const int ta = TrailingZeros(static_cast<UInt128>(a));
    a >>= ta;  // exact: the shifted-out bits are zero
    f = static_cast<int16_t>(f + ta);
  }
  const int fa = a == 0 ? e : f;
  const int lo = std::min(e, fa);
  const int sa = fa - lo, sp = e - lo;
  const Int128 sp_value = negative ? -static_cast<Int128>(p) : static_cast<Int128>(p);
  if (BitLength(Magnitude(a)) + sa <= kWindowBits && BitLength(p) + sp <= kWindowBits) {
    a = (a << sa) + (sp_value << sp);
    f = static_cast<int16_t>(lo);
    return;
  }
  Spill(i);
  wide_[i].Add(sp_value, e);
}

double ExactSumVector::Get(int64_t i) const {
  if (exponent_[i] == kSpilled) return wide_.at(i).ToDouble();
  const Int128 a = mantissa_[i];
  if (a == 0) return 0.0;
  // int128 -> double is correctly rounded (libgcc / compiler-rt), and scaling
  // by 2^F is exact in the normal range (|value| >= 2^-149); the result is the
  // same correctly rounded value RoundToDouble gives, only faster.
  const int f = exponent_[i];
  const double scale = std::bit_cast<double>(static_cast<uint64_t>(f + 1023) << 52);
  return static_cast<double>(a) * scale;
}

}  // namespace fedfm::aggregation::internal
