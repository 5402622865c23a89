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
// uint64) is an integer P < 2^88 times a power of two 2^E with E >= -149.
//
// Fast form (8 bytes per coordinate): a double per coordinate, used while a
// double holds the sum exactly. Coordinates come in blocks of kBlock; each
// block keeps F, the lowest exponent of the least significant bit of anything
// it has taken, and B, a bound on the magnitudes it holds. Every value in
// the block is then a multiple of 2^F, so while magnitudes stay at or below
// 2^(53+F) each double addition is exact (its result is a multiple of 2^F
// with at most 53 significant bits). AddRange checks that bound once per
// block (one pass over the new values: lowest exponent, largest magnitude)
// and then adds with plain double arithmetic, weight < 2^29 making
// value * weight exact too. The 53 bits are shared by the 24 of a mantissa,
// the binades between a block's smallest and largest values, the weight's
// bits and the growth of the sum: e.g. values spanning 10 binades, weights
// below 2^10 and 500 clients fit (and far more when signs vary, since B is
// measured again before the block gives up on the fast form).
//
// Window form (18 more bytes per coordinate, allocated per block when
// needed): when a block's values would not fit, its doubles move exactly into
// per-coordinate "windows" and it starts afresh; contributions that cannot
// use the fast form at all (weight >= 2^29, or a single update spanning more
// than 53 bits) go straight there. A window is a 128-bit two's-complement
// integer A and the exponent F of its least significant bit (value = A *
// 2^F). Adding aligns the two operands at the lower exponent and adds exactly
// while both fit in 125 bits. With 24-bit mantissas, weights below 2^20 and
// up to 2^10 clients that leaves ~70 bits of exponent spread, e.g. 1e-10 next
// to 1e10, before a coordinate needs the wide form. The hot path does not
// normalise; when an operand would not fit, a slow path strips trailing zero
// bits and retries.
// A coordinate whose span grows beyond that moves, exactly, into a 384-bit
// fixed-point accumulator with LSB 2^-149 (a Kulisch-style accumulator wide
// enough for any float32 * uint64 and 2^40 additions), kept in a side table.
// Get() rounds the exact value (the fast double plus the window or the wide
// form) once to the nearest double (ties to even); every path computes the
// exact value, so they cannot disagree.
//
// Memory: 8 bytes per coordinate, plus 18 per coordinate of the blocks that
// needed windows and 48 per spilled coordinate. Not thread-safe; distinct
// blocks (kBlock-aligned ranges) are independent, so callers may add to
// disjoint block ranges from different threads.
#ifndef FEDFM_AGGREGATION_INTERNAL_EXACT_SUM_H_
#define FEDFM_AGGREGATION_INTERNAL_EXACT_SUM_H_

#include <array>
#include <cstdint>
#include <memory>
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
  // Coordinates per block of the fast form (see the file comment).
  static constexpr int64_t kBlock = 256;

  ExactSumVector() = default;
  explicit ExactSumVector(int64_t size);

  int64_t size() const { return static_cast<int64_t>(fast_.size()); }

  // Adds value * weight to coordinate i, exactly. `value` must be finite
  // (FEDFM_CHECKed); zeros (either sign) add nothing.
  void Add(int64_t i, float value, uint64_t weight);

  // Add(begin + k, values[k], weight) for every k: the same result, block by
  // block through the fast form where it can.
  void AddRange(int64_t begin, std::span<const float> values, uint64_t weight);

  // The exact sum at coordinate i rounded to the nearest double (ties to
  // even); +0.0 when the sum is zero.
  double Get(int64_t i) const;

  // Coordinates held in the wide form (for tests and benchmarks).
  int64_t spilled() const;
  // Blocks that needed windows (for tests and benchmarks).
  int64_t window_blocks() const;

 private:
  // The window form of one block.
  struct Windows {
    std::array<Int128, kBlock> mantissa{};
    std::array<int16_t, kBlock> exponent{};
    std::unordered_map<int, WideAccumulator> wide;  // spilled coordinates, by offset
  };
  struct BlockState {
    double max_magnitude = 0.0;        // B: a bound on |fast value| in the block
    int16_t lsb_exponent = INT16_MAX;  // F; INT16_MAX while the block is empty
  };
  static constexpr int16_t kSpilled = INT16_MIN;

  // Adds the values (all inside block `block`, from coordinate `begin`).
  void AddToBlock(int64_t block, int64_t begin, std::span<const float> values, uint64_t weight);
  // The window-form path: adds each value into its coordinate's window.
  void AddToWindows(int64_t begin, std::span<const float> values, uint64_t weight);
  // Moves the fast values of `block` exactly into its windows; the fast form
  // of the block is empty afterwards.
  void FlushBlock(int64_t block);
  Windows& WindowsOf(int64_t block);
  // Adds (negative ? -p : p) * 2^e exactly to coordinate i's window.
  void AddProduct(int64_t i, bool negative, UInt128 p, int e);
  void AddSlow(int64_t i, bool negative, UInt128 p, int e);
  void Spill(int64_t i);

  std::vector<double> fast_;
  std::vector<BlockState> blocks_;
  std::vector<std::unique_ptr<Windows>> windows_;  // per block, null until needed
};

// Rounds sign * magnitude * 2^exponent to the nearest double (ties to even).
// `magnitude` is little-endian limbs. Exposed for tests.
double RoundToDouble(bool negative, const uint64_t* magnitude, int num_limbs, int exponent);

}  // namespace fedfm::aggregation::internal

#endif  // FEDFM_AGGREGATION_INTERNAL_EXACT_SUM_H_
