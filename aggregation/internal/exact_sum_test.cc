#include "aggregation/internal/exact_sum.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace fedfm::aggregation::internal {
namespace {

struct Contribution {
  int64_t index;
  float value;
  uint64_t weight;
};

// Values spread over many binades, both signs, some subnormal and some huge,
// so that both the window and the wide form are exercised.
std::vector<Contribution> RandomContributions(int n, int64_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> index(0, size - 1);
  std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-30, 30);
  std::uniform_int_distribution<uint64_t> weight(1, 100000);
  std::vector<Contribution> out;
  for (int k = 0; k < n; ++k) {
    int e = exponent(rng);
    if (k % 97 == 0) e = -140;  // subnormal range
    if (k % 89 == 0) e = 100;   // near float max
    out.push_back({index(rng), std::ldexp(mantissa(rng), e), weight(rng)});
  }
  return out;
}

uint64_t Bits(double x) { return std::bit_cast<uint64_t>(x); }

TEST(AggregationExactSumTest, CancellationIsExact) {
  ExactSumVector s(1);
  s.Add(0, 1e20f, 1);
  s.Add(0, 1.0f, 3);
  s.Add(0, -1e20f, 1);
  EXPECT_EQ(s.Get(0), 3.0);  // a double accumulator would give 0
  s.Add(0, -1.0f, 3);
  EXPECT_EQ(Bits(s.Get(0)), Bits(0.0));  // +0, not -0
}

TEST(AggregationExactSumTest, MatchesDoubleWhereDoubleIsExact) {
  // Small integers times small weights: every partial sum is exact in double.
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> v(-1000, 1000);
  std::uniform_int_distribution<uint64_t> w(1, 1000);
  ExactSumVector s(4);
  double ref[4] = {0, 0, 0, 0};
  for (int k = 0; k < 400; ++k) {
    const int i = k % 4;
    const float x = static_cast<float>(v(rng)) / 8.0f;
    const uint64_t wt = w(rng);
    s.Add(i, x, wt);
    ref[i] += static_cast<double>(x) * static_cast<double>(wt);
  }
  for (int i = 0; i < 4; ++i) EXPECT_EQ(s.Get(i), ref[i]) << i;
}

TEST(AggregationExactSumTest, OrderIndependentBitwise) {
  const int64_t size = 16;
  std::vector<Contribution> c = RandomContributions(3000, size, 11);
  ExactSumVector reference(size);
  for (const Contribution& x : c) reference.Add(x.index, x.value, x.weight);
  EXPECT_GT(reference.spilled(), 0) << "the test should reach the wide form";
  std::mt19937 rng(3);
  for (int trial = 0; trial < 5; ++trial) {
    std::shuffle(c.begin(), c.end(), rng);
    ExactSumVector s(size);
    for (const Contribution& x : c) s.Add(x.index, x.value, x.weight);
    for (int64_t i = 0; i < size; ++i) ASSERT_EQ(Bits(s.Get(i)), Bits(reference.Get(i))) << "trial " << trial;
  }
}

TEST(AggregationExactSumTest, AddRangeEqualsElementwiseAdd) {
  // Rows of values over many binades (some zero, some subnormal, some huge)
  // with assorted weights: the fast range path must agree bit for bit.
  const int64_t size = 64;
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-40, 40);
  ExactSumVector by_range(size), by_element(size);
  for (int row = 0; row < 300; ++row) {
    std::vector<float> v(size);
    for (int64_t i = 0; i < size; ++i) {
      const int kind = (row * 7 + static_cast<int>(i)) % 23;
      v[i] = kind == 0 ? 0.0f : std::ldexp(mantissa(rng), kind == 1 ? -145 : (kind == 2 ? 110 : exponent(rng)));
    }
    const uint64_t weight = row % 11 == 0 ? ~uint64_t{0} - row : 1 + row * 977;
    const int64_t begin = row % 3, length = size - begin - row % 5;
    by_range.AddRange(begin, std::span<const float>(v).subspan(begin, length), weight);
    for (int64_t i = begin; i < begin + length; ++i) by_element.Add(i, v[i], weight);
  }
  EXPECT_GT(by_element.spilled(), 0);
  for (int64_t i = 0; i < size; ++i) EXPECT_EQ(Bits(by_range.Get(i)), Bits(by_element.Get(i))) << i;
}

// The exact value of value * weight added to `wide` (the reference).
void AddToWide(WideAccumulator& wide, float value, uint64_t weight) {
  if (value == 0.0f) return;
  int e;
  const float m = std::frexp(value, &e);  // value = m * 2^e, |m| in [0.5, 1)
  auto mant = static_cast<int64_t>(std::ldexp(static_cast<double>(m), 24));
  int exp = e - 24;
  for (; exp < -149; ++exp) mant /= 2;  // exact: subnormals have trailing zeros here
  wide.Add(static_cast<Int128>(mant) * static_cast<Int128>(weight), exp);
}

TEST(AggregationExactSumTest, WindowAndWideFormsAgree) {
  // The same contributions summed by the windowed vector and directly by the
  // wide accumulator must round to the same double.
  const int64_t size = 8;
  std::vector<Contribution> c = RandomContributions(2000, size, 5);
  ExactSumVector s(size);
  std::vector<WideAccumulator> wide(size);
  for (const Contribution& x : c) {
    s.Add(x.index, x.value, x.weight);
    AddToWide(wide[x.index], x.value, x.weight);
  }
  for (int64_t i = 0; i < size; ++i) EXPECT_EQ(Bits(s.Get(i)), Bits(wide[i].ToDouble())) << i;
}

TEST(AggregationExactSumTest, UpdatesWithSmallWeightsStayInTheFastFormAndAreExact) {
  // Update-like rows (normal values around 1e-3, both signs, some exact
  // zeros, weights up to 8) over several blocks and a partial one: no block
  // needs windows, and every sum is the exact one.
  const int64_t size = 3 * ExactSumVector::kBlock + 41;
  std::mt19937 rng(21);
  std::normal_distribution<float> normal(0.0f, 1e-3f);
  std::uniform_int_distribution<uint64_t> weight(1, 8);
  ExactSumVector s(size);
  std::vector<WideAccumulator> reference(size);
  for (int row = 0; row < 200; ++row) {
    std::vector<float> v(size);
    for (int64_t i = 0; i < size; ++i) v[i] = (i + row) % 31 == 0 ? 0.0f : normal(rng);
    const uint64_t w = weight(rng);
    s.AddRange(0, v, w);
    for (int64_t i = 0; i < size; ++i) AddToWide(reference[i], v[i], w);
  }
  EXPECT_EQ(s.window_blocks(), 0);
  for (int64_t i = 0; i < size; ++i) ASSERT_EQ(Bits(s.Get(i)), Bits(reference[i].ToDouble())) << i;
}

TEST(AggregationExactSumTest, MixedFormsAcrossBlocksMatchTheExactSum) {
  // Ranges crossing block boundaries, rows whose values grow until a block's
  // doubles overflow their 53 bits (moved into windows), rows spanning more
  // than a double alone, tiny and huge values, weights >= 2^29: every path
  // and their mixtures must still give the exact sum, in any order.
  const int64_t size = 2 * ExactSumVector::kBlock + 77;
  struct Row {
    int64_t begin;
    std::vector<float> values;
    uint64_t weight;
  };
  std::mt19937 rng(33);
  std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
  std::uniform_int_distribution<int64_t> position(0, size - 1);
  std::vector<Row> rows;
  for (int r = 0; r < 300; ++r) {
    int64_t a = position(rng), b = position(rng);
    if (a > b) std::swap(a, b);
    Row row{a, std::vector<float>(static_cast<size_t>(b - a + 1)), 1 + static_cast<uint64_t>(r) * 37};
    const int base = r % 50 == 7 ? 70 : (r % 50 == 11 ? -120 : -10 + r / 10);  // growth, then extremes
    const int spread = r % 13 == 0 ? 60 : 8;
    std::uniform_int_distribution<int> exponent(base - spread, base);
    for (float& x : row.values) x = std::ldexp(mantissa(rng), exponent(rng));
    if (r % 17 == 0) row.weight = (uint64_t{1} << 29) + static_cast<uint64_t>(r);
    rows.push_back(std::move(row));
  }
  std::vector<WideAccumulator> reference(size);
  for (const Row& row : rows) {
    for (size_t k = 0; k < row.values.size(); ++k) AddToWide(reference[row.begin + k], row.values[k], row.weight);
  }
  for (int trial = 0; trial < 3; ++trial) {
    ExactSumVector s(size);
    for (const Row& row : rows) s.AddRange(row.begin, row.values, row.weight);
    EXPECT_GT(s.window_blocks(), 0);
    for (int64_t i = 0; i < size; ++i) {
      ASSERT_EQ(Bits(s.Get(i)), Bits(reference[i].ToDouble())) << "trial " << trial << ", coordinate " << i;
    }
    std::shuffle(rows.begin(), rows.end(), rng);
  }
}

TEST(AggregationExactSumTest, RoundsToNearestEven) {
  // 2^53 + 1 is a tie between 2^53 and 2^53 + 2: even wins. 2^53 + 3 rounds up.
  const uint64_t tie[2] = {(uint64_t{1} << 53) + 1, 0};
  EXPECT_EQ(RoundToDouble(false, tie, 2, 0), 9007199254740992.0);
  const uint64_t up[2] = {(uint64_t{1} << 53) + 3, 0};
  EXPECT_EQ(RoundToDouble(false, up, 2, 0), 9007199254740996.0);
  // A tie broken by a sticky bit far below: 2^117 + 2^64 + 1 (bits beyond the
  // top 64 bits) must round up, not to even.
  const uint64_t sticky[2] = {1, (uint64_t{1} << 53) + 1};
  EXPECT_EQ(RoundToDouble(true, sticky, 2, -64), -std::ldexp(9007199254740994.0, 0));

  // The same cases through the accumulator's window form.
  const uint64_t two53 = uint64_t{1} << 53;
  ExactSumVector s(4);
  s.Add(0, 1.0f, two53 + 1);
  s.Add(1, -1.0f, two53 + 3);
  s.Add(2, 1.0f, two53 + 1);
  s.Add(2, std::ldexp(1.0f, -60), 1);  // breaks the tie upwards
  s.Add(3, 0.5f, two53 + 1);           // a tie one binade lower
  EXPECT_EQ(s.Get(0), 9007199254740992.0);
  EXPECT_EQ(s.Get(1), -9007199254740996.0);
  EXPECT_EQ(s.Get(2), 9007199254740994.0);
  EXPECT_EQ(s.Get(3), 4503599627370496.0);
}

TEST(AggregationExactSumTest, SubnormalAndHugeValues) {
  ExactSumVector s(1);
  const float tiny = std::numeric_limits<float>::denorm_min();
  const float huge = std::numeric_limits<float>::max();
  s.Add(0, huge, 1);
  s.Add(0, tiny, 5);
  s.Add(0, -huge, 1);
  EXPECT_EQ(s.Get(0), 5.0 * tiny);
  s.Add(0, huge, ~uint64_t{0});
  // huge * (2^64 - 1) + 5 tiny rounds to huge * 2^64: the rest is far below half an ulp.
  EXPECT_EQ(s.Get(0), std::ldexp(static_cast<double>(huge), 64));
}

}  // namespace
}  // namespace fedfm::aggregation::internal
