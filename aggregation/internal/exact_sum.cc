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

ExactSumVector::ExactSumVector(int64_t size)
    : fast_(size, 0.0), blocks_((size + kBlock - 1) / kBlock), windows_((size + kBlock - 1) / kBlock) {}

int64_t ExactSumVector::window_blocks() const {
  int64_t n = 0;
  for (const auto& w : windows_) n += w != nullptr;
  return n;
}

int64_t ExactSumVector::spilled() const {
  int64_t n = 0;
  for (const auto& w : windows_) n += w != nullptr ? static_cast<int64_t>(w->wide.size()) : 0;
  return n;
}

ExactSumVector::Windows& ExactSumVector::WindowsOf(int64_t block) {
  std::unique_ptr<Windows>& w = windows_[block];
  if (w == nullptr) w = std::make_unique<Windows>();
  return *w;
}

void ExactSumVector::Spill(int64_t i) {
  Windows& win = *windows_[i / kBlock];
  Int128& a = win.mantissa[i % kBlock];
  int16_t& f = win.exponent[i % kBlock];
  WideAccumulator& w = win.wide[i % kBlock];
  if (a != 0) w.Add(a, f);
  a = 0;
  f = kSpilled;
}

void ExactSumVector::Add(int64_t i, float value, uint64_t weight) {
  FEDFM_CHECK(std::isfinite(value));
  AddRange(i, std::span<const float>(&value, 1), weight);
}

void ExactSumVector::AddRange(int64_t begin, std::span<const float> values, uint64_t weight) {
  FEDFM_CHECK(begin >= 0 && begin + static_cast<int64_t>(values.size()) <= size());
  if (weight == 0) return;
  while (!values.empty()) {
    const int64_t block = begin / kBlock;
    const auto n = static_cast<size_t>(std::min<int64_t>((block + 1) * kBlock - begin, values.size()));
    AddToBlock(block, begin, values.first(n), weight);
    begin += static_cast<int64_t>(n);
    values = values.subspan(n);
  }
}

void ExactSumVector::AddToBlock(int64_t block, int64_t begin, std::span<const float> values, uint64_t weight) {
  // value * weight is exact in a double for weight < 2^29 (24 + 29 bits).
  if (weight >= (uint64_t{1} << 29)) {
    AddToWindows(begin, values, weight);
    return;
  }
  // One pass over the new values: the largest magnitude, and a lower bound
  // on the exponent of their least significant bits ((bits - 1) >> 23 is the
  // biased exponent, one less for exact powers of two, 0 for subnormals, and
  // 0x1FF for zeros, which thereby drop out of the minimum). Branch-free so
  // that it vectorises.
  uint32_t max_bits = 0, min_key = 0x1FF;
  for (const float v : values) {
    const uint32_t bits = std::bit_cast<uint32_t>(v) & 0x7FFFFFFFu;
    max_bits = std::max(max_bits, bits);
    min_key = std::min(min_key, (bits - 1) >> 23);
  }
  if (max_bits == 0) return;  // all zeros
  if (max_bits >= 0x7F800000u) {  // NaN or infinity: the element path checks
    AddToWindows(begin, values, weight);
    return;
  }
  // Every new value * weight is a multiple of 2^e_min.
  const int e_min = std::max<int>(static_cast<int>(min_key), 1) - 150;
  const double w = static_cast<double>(weight);
  const double max_new = static_cast<double>(std::bit_cast<float>(max_bits)) * w;  // exact
  BlockState& state = blocks_[block];
  // Both the block's values and the new ones are multiples of 2^lsb; a sum of
  // two such values, at most 2^(53 + lsb) in magnitude, is exact in a double.
  auto fits = [&](int lsb) {
    const double limit = std::ldexp(1.0, 53 + lsb);
    // limit - max_new is exact: both are multiples of 2^lsb in [0, 2^(53+lsb)].
    return max_new <= limit && state.max_magnitude <= limit - max_new;
  };
  int lsb = std::min<int>(state.lsb_exponent, e_min);
  if (!fits(lsb) && state.lsb_exponent != INT16_MAX) {
    // The bound only grows (by max_new per add); measure it before giving up.
    const int64_t first = block * kBlock, last = std::min<int64_t>(first + kBlock, size());
    double measured = 0.0;
    for (int64_t i = first; i < last; ++i) measured = std::max(measured, std::fabs(fast_[i]));
    state.max_magnitude = measured;
    if (!fits(lsb)) {
      FlushBlock(block);
      lsb = e_min;
    }
  }
  if (!fits(lsb)) {  // too wide even alone: the values span more than a double
    AddToWindows(begin, values, weight);
    return;
  }
  state.lsb_exponent = static_cast<int16_t>(lsb);
  // A bound, not the maximum: |old + new| <= B + max_new, both multiples of
  // 2^lsb and their sum <= 2^(53+lsb), so the sum is exact as well.
  state.max_magnitude += max_new;
  double* fast = fast_.data() + begin;
  for (size_t k = 0; k < values.size(); ++k) {
    fast[k] += static_cast<double>(values[k]) * w;  // exact, see above
  }
}

void ExactSumVector::FlushBlock(int64_t block) {
  BlockState& state = blocks_[block];
  const int64_t begin = block * kBlock;
  const int64_t end = std::min<int64_t>(begin + kBlock, size());
  for (int64_t i = begin; i < end; ++i) {
    const double v = fast_[i];
    if (v == 0.0) continue;
    // v = m * 2^F with |m| <= 2^53: an exact integer after scaling.
    const auto m = static_cast<int64_t>(std::ldexp(v, -state.lsb_exponent));
    AddProduct(i, m < 0, Magnitude(m), state.lsb_exponent);
    fast_[i] = 0.0;
  }
  state = BlockState();
}

void ExactSumVector::AddProduct(int64_t i, bool negative, UInt128 p, int e) {
  Windows& win = WindowsOf(i / kBlock);
  int16_t& f = win.exponent[i % kBlock];
  if (f == kSpilled) {
    win.wide[i % kBlock].Add(negative ? -static_cast<Int128>(p) : static_cast<Int128>(p), e);
    return;
  }
  Int128& a = win.mantissa[i % kBlock];
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

void ExactSumVector::AddToWindows(int64_t begin, std::span<const float> values, uint64_t weight) {
  Windows& win = WindowsOf(begin / kBlock);
  const int64_t offset = begin % kBlock;
  FEDFM_CHECK(offset + static_cast<int64_t>(values.size()) <= kBlock);
  // Upper bound on the bits of m * weight.
  const int p_bits = 24 + static_cast<int>(std::bit_width(weight));
  Int128* mantissa = win.mantissa.data() + offset;
  int16_t* exponent = win.exponent.data() + offset;
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
    FEDFM_CHECK(std::isfinite(value));
    // value * weight = p * 2^e exactly, p < 2^88.
    const uint32_t fraction = bits & 0x7FFFFF;
    const uint64_t m = biased == 0 ? fraction : (fraction | 0x800000u);
    AddProduct(begin + static_cast<int64_t>(k), (bits >> 31) != 0, static_cast<UInt128>(m) * weight, e);
  }
}

void ExactSumVector::AddSlow(int64_t i, bool negative, UInt128 p, int e) {
  Windows& win = *windows_[i / kBlock];
  Int128& a = win.mantissa[i % kBlock];
  int16_t& f = win.exponent[i % kBlock];
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
  win.wide[i % kBlock].Add(sp_value, e);
}

double ExactSumVector::Get(int64_t i) const {
  const double fast = fast_[i];
  const Windows* win = windows_[i / kBlock].get();
  if (win == nullptr) return fast == 0.0 ? 0.0 : fast;  // a double that is the exact sum
  int f = win->exponent[i % kBlock];
  Int128 a = win->mantissa[i % kBlock];
  if (fast != 0.0) {
    // Both forms hold part of the sum: add them exactly, then round once.
    const int lsb = blocks_[i / kBlock].lsb_exponent;
    const auto m = static_cast<int64_t>(std::ldexp(fast, -lsb));  // exact, see FlushBlock
    const int fa = a == 0 || f == kSpilled ? lsb : f;
    const int lo = std::min(lsb, fa);
    if (f != kSpilled && BitLength(Magnitude(a)) + (fa - lo) <= kWindowBits && 64 + (lsb - lo) <= kWindowBits) {
      a = (a << (fa - lo)) + (static_cast<Int128>(m) << (lsb - lo));
      f = lo;
    } else {
      WideAccumulator w = f == kSpilled ? win->wide.at(i % kBlock) : WideAccumulator();
      if (f != kSpilled && a != 0) w.Add(a, f);
      w.Add(m, lsb);
      return w.ToDouble();
    }
  } else if (f == kSpilled) {
    return win->wide.at(i % kBlock).ToDouble();
  }
  if (a == 0) return 0.0;
  // int128 -> double is correctly rounded (libgcc / compiler-rt), and scaling
  // by 2^F is exact in the normal range (|value| >= 2^-149); the result is the
  // same correctly rounded value RoundToDouble gives, only faster.
  const double scale = std::bit_cast<double>(static_cast<uint64_t>(f + 1023) << 52);
  return static_cast<double>(a) * scale;
}

}  // namespace fedfm::aggregation::internal
