// ExactSumVector: per-coordinate sums of weighted float32 values, computed
// without any rounding, so that the result is a function of the multiset of
// contributions only — never of the order in which they were added.
//
// Why: the coordinator receives updates in network order, but a rerun of a
// round must give a bit-identical model. Floating-point addition is not
// associative (and neither are compensated / Kahan sums), so any float or
// double accumulator depends on arrival order. Buffering and sorting by client
// id would cost O(clients × model) memory. Exact accumulation gives the same
// answer as summing in client-id order with infinite precision, in O(model)
// memory, for any arrival order.
//
// How: every contribution value * weight (value a finite float32, weight a
// uint64) is an integer P < 2^88 times a power of two 2^E with E >= -149. Each
// coordinate keeps a "window": a 128-bit two's-complement integer A and the
// exponent F of its least significant bit (value = A * 2^F). Adding aligns the
// two operands at the lower exponent and adds exactly while both fit in 125
// bits. With 24-bit mantissas, weights below 2^20 and up to 2^10 clients that
// leaves ~70 bits of exponent spread, e.g. 1e-10 next to 1e10, before a
// coordinate needs the wide form. The hot path does not normalise;
// when an operand would not fit, a slow path strips trailing zero bits and
// retries.
// A coordinate whose span grows beyond that moves, exactly, into a 384-bit
// fixed-point accumulator with LSB 2^-149 (a Kulisch-style accumulator wide
// enough for any float32 * uint64 and 2^40 additions), kept in a side table.
// Get() rounds the exact value once to the nearest double (ties to even);
// both forms give the correctly rounded value, so they cannot disagree.
//
// Memory: 18 bytes per coordinate, plus 48 bytes per spilled coordinate.
// Not thread-safe.
#ifndef FEDFM_AGGREGATION_INTERNAL_EXACT_SUM_H_
#define FEDFM_AGGREGATION_INTERNAL_EXACT_SUM_H_

#include <array>
#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

namespace fedfm::aggregation::internal {

__extension__ typedef __int128 Int128;
__extension__ typedef unsigned __int128 UInt128;

// 384-bit two's-complement fixed point, LSB weight 2^-149.
struct WideAccumulator {
  std::array<uint64_t, 6> limbs{};
  // Adds value * 2^exponent (exponent >= -149, |value| < 2^127).
  void Add(Int128 value, int exponent);
  // The exact value rounded to the nearest double.
  double ToDouble() const;
};

class ExactSumVector {
 public:
  ExactSumVector() = default;
  explicit ExactSumVector(int64_t size);

  int64_t size() const { return static_cast<int64_t>(exponent_.size()); }

  // Adds value * weight to coordinate i, exactly. `value` must be finite
  // (FEDFM_CHECKed); zeros (either sign) add nothing.
  void Add(int64_t i, float value, uint64_t weight);

  // Add(begin + k, values[k], weight) for every k: the same result, with a
  // fast path for the common case (no spill, new exponent >= the window's).
  void AddRange(int64_t begin, std::span<const float> values, uint64_t weight);

  // The exact sum at coordinate i rounded to the nearest double (ties to
  // even); +0.0 when the sum is zero.
  double Get(int64_t i) const;

  // Coordinates held in the wide form (for tests and benchmarks).
  int64_t spilled() const { return static_cast<int64_t>(wide_.size()); }

 private:
  static constexpr int16_t kSpilled = INT16_MIN;

  void AddSlow(int64_t i, bool negative, UInt128 p, int e);
  void Spill(int64_t i);

  std::vector<Int128> mantissa_;
  std::vector<int16_t> exponent_;
  std::unordered_map<int64_t, WideAccumulator> wide_;
};

// Rounds sign * magnitude * 2^exponent to the nearest double (ties to even).
// `magnitude` is little-endian limbs. Exposed for tests.
double RoundToDouble(bool negative, const uint64_t* magnitude, int num_limbs, int exponent);

}  // namespace fedfm::aggregation::internal

#endif  // FEDFM_AGGREGATION_INTERNAL_EXACT_SUM_H_
