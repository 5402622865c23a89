#include "zeroth_order/philox.h"

#include <cstdint>
#include <set>

#include "gtest/gtest.h"

namespace fedfm::zeroth_order {
namespace {

struct Kat {
  Philox4x32Counter counter;
  Philox4x32Key key;
  uint32_t expected[4];
};

void ExpectKat(const Philox4x32Counter& got, const uint32_t expected[4]) {
  for (int i = 0; i < 4; ++i) EXPECT_EQ(got.v[i], expected[i]) << "word " << i;
}

// Random123 tests/kat_vectors, the "philox4x32 10" lines (counter[4] key[2] -> output[4]).
TEST(PhiloxTest, MatchesRandom123KnownAnswers10Rounds) {
  const Kat kats[] = {
      {{{0x00000000, 0x00000000, 0x00000000, 0x00000000}},
       {{0x00000000, 0x00000000}},
       {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}},
       {{0xffffffff, 0xffffffff}},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}},
       {{0xa4093822, 0x299f31d0}},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Kat& k : kats) {
    SCOPED_TRACE(k.counter.v[0]);
    ExpectKat(Philox4x32_10(k.counter, k.key), k.expected);
    ExpectKat(Philox4x32R<10>(k.counter, k.key), k.expected);
  }
}

// The "philox4x32 7" lines of the same file: checks the key schedule per round.
TEST(PhiloxTest, MatchesRandom123KnownAnswers7Rounds) {
  const Kat kats[] = {
      {{{0x00000000, 0x00000000, 0x00000000, 0x00000000}},
       {{0x00000000, 0x00000000}},
       {0x5f6fb709, 0x0d893f64, 0x4f121f81, 0x4f730a48}},
      {{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}},
       {{0xffffffff, 0xffffffff}},
       {0x5207ddc2, 0x45165e59, 0x4d8ee751, 0x8c52f662}},
      {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}},
       {{0xa4093822, 0x299f31d0}},
       {0x4dfccaba, 0x190a87f0, 0xc47362ba, 0xb6b5242a}},
  };
  for (const Kat& k : kats) {
    SCOPED_TRACE(k.counter.v[0]);
    ExpectKat(Philox4x32R<7>(k.counter, k.key), k.expected);
  }
}

TEST(PhiloxTest, SeedKeyIsLowWordThenHighWord) {
  const Philox4x32Key k = PhiloxKeyFromSeed(0x299f31d0a4093822ull);
  EXPECT_EQ(k.v[0], 0xa4093822u);
  EXPECT_EQ(k.v[1], 0x299f31d0u);
}

TEST(PhiloxTest, DeriveSeedIsTheSpecifiedPhiloxBlock) {
  const uint64_t parent = 0x0123456789abcdefull;
  const uint64_t a = 0x1122334455667788ull;
  const Philox4x32Counter c{{0x55667788u, 0x11223344u, 7u, kPurposeSeedPool}};
  const Philox4x32Counter out = Philox4x32_10(c, PhiloxKeyFromSeed(parent));
  EXPECT_EQ(DeriveSeed(parent, a, 7, kPurposeSeedPool),
            static_cast<uint64_t>(out.v[0]) | (static_cast<uint64_t>(out.v[1]) << 32));
}

TEST(PhiloxTest, DerivedSeedsAreDistinctAcrossInputsAndPurposes) {
  std::set<uint64_t> seen;
  for (uint64_t a = 0; a < 64; ++a) {
    for (uint32_t b = 0; b < 16; ++b) {
      for (uint32_t purpose : {kPurposeSeedPool, kPurposePerturbation, kPurposePoolPick}) {
        seen.insert(DeriveSeed(/*parent=*/42, a, b, purpose));
      }
    }
  }
  EXPECT_EQ(seen.size(), 64u * 16u * 3u);
  EXPECT_NE(DeriveSeed(1, 0, 0, kPurposeStep), DeriveSeed(2, 0, 0, kPurposeStep));
}

}  // namespace
}  // namespace fedfm::zeroth_order
