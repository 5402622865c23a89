#include "aggregation/secagg/shamir.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

namespace fedfm::secagg {
namespace {

Key TestSeed(uint8_t tag) {
  Key k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(i * 7 + tag);
  return k;
}

std::vector<uint32_t> Points(std::initializer_list<uint32_t> xs) { return xs; }

TEST(ShamirTest, AnyThresholdSubsetReconstructs) {
  auto rng = NewSeededRandom(TestSeed(1));
  absl::StatusOr<Key> secret = rng->NewKey();
  ASSERT_TRUE(secret.ok());
  // Holder indices 3, 8, 11, 20, 42, 100, 7 -> x = index + 1.
  const std::vector<uint32_t> xs = Points({4, 9, 12, 21, 43, 101, 8});
  const int t = 4;
  absl::StatusOr<std::vector<ShamirShare>> shares = ShamirSplit(*secret, t, xs, *rng);
  ASSERT_TRUE(shares.ok()) << shares.status();
  ASSERT_EQ(shares->size(), xs.size());

  std::mt19937 gen(7);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<ShamirShare> subset = *shares;
    std::shuffle(subset.begin(), subset.end(), gen);
    subset.resize(t + trial % 3);  // t, t + 1 or t + 2 shares
    absl::StatusOr<Key> back = ShamirReconstruct(subset, t);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, *secret);
  }
}

TEST(ShamirTest, ExtremeSecretsAndThresholds) {
  auto rng = NewSeededRandom(TestSeed(2));
  std::vector<uint32_t> xs(10);
  std::iota(xs.begin(), xs.end(), 1);
  Key ones;
  ones.fill(0xff);
  Key zeros{};
  for (const Key& secret : {ones, zeros}) {
    for (int t : {1, 5, 10}) {
      absl::StatusOr<std::vector<ShamirShare>> shares = ShamirSplit(secret, t, xs, *rng);
      ASSERT_TRUE(shares.ok());
      absl::StatusOr<Key> back =
          ShamirReconstruct(std::span<const ShamirShare>(shares->data() + (10 - t), t), t);
      ASSERT_TRUE(back.ok()) << back.status();
      EXPECT_EQ(*back, secret) << "t = " << t;
    }
  }
}

TEST(ShamirTest, FewerThanThresholdFailOrGiveGarbage) {
  auto rng = NewSeededRandom(TestSeed(3));
  absl::StatusOr<Key> secret = rng->NewKey();
  ASSERT_TRUE(secret.ok());
  std::vector<uint32_t> xs(8);
  std::iota(xs.begin(), xs.end(), 1);
  const int t = 5;
  absl::StatusOr<std::vector<ShamirShare>> shares = ShamirSplit(*secret, t, xs, *rng);
  ASSERT_TRUE(shares.ok());

  std::vector<ShamirShare> few(shares->begin(), shares->begin() + (t - 1));
  EXPECT_EQ(ShamirReconstruct(few, t).status().code(), absl::StatusCode::kInvalidArgument);

  // Claiming a lower threshold: the interpolation is unrelated garbage, which
  // the encoding check refuses (or, with probability 2^-25, a wrong key).
  absl::StatusOr<Key> wrong = ShamirReconstruct(few, t - 1);
  if (wrong.ok()) {
    EXPECT_NE(*wrong, *secret);
  } else {
    EXPECT_EQ(wrong.status().code(), absl::StatusCode::kDataLoss);
  }
  // Raw interpolation through t - 1 shares does not give the secret's chunks.
  const ShareValue raw = ShamirInterpolateAtZero(few);
  const ShareValue right = ShamirInterpolateAtZero(std::span<const ShamirShare>(shares->data(), t));
  for (int c = 0; c < kShamirChunks; ++c) EXPECT_NE(raw[c], right[c]);
}

TEST(ShamirTest, MixedSecretsAreDetected) {
  auto rng = NewSeededRandom(TestSeed(4));
  absl::StatusOr<Key> a = rng->NewKey();
  absl::StatusOr<Key> b = rng->NewKey();
  ASSERT_TRUE(a.ok() && b.ok());
  std::vector<uint32_t> xs = Points({1, 2, 3, 4});
  auto sa = ShamirSplit(*a, 3, xs, *rng);
  auto sb = ShamirSplit(*b, 3, xs, *rng);
  ASSERT_TRUE(sa.ok() && sb.ok());
  std::vector<ShamirShare> mixed = {(*sa)[0], (*sa)[1], (*sb)[2]};
  absl::StatusOr<Key> back = ShamirReconstruct(mixed, 3);
  EXPECT_TRUE(!back.ok() || (*back != *a && *back != *b));
}

TEST(ShamirTest, RejectsBadArguments) {
  auto rng = NewSeededRandom(TestSeed(5));
  Key secret = TestSeed(9);
  EXPECT_FALSE(ShamirSplit(secret, 0, Points({1, 2}), *rng).ok());
  EXPECT_FALSE(ShamirSplit(secret, 3, Points({1, 2}), *rng).ok());
  EXPECT_FALSE(ShamirSplit(secret, 2, Points({1, 0, 3}), *rng).ok());
  EXPECT_FALSE(ShamirSplit(secret, 2, Points({1, 2, 1}), *rng).ok());

  auto shares = ShamirSplit(secret, 2, Points({1, 2, 3}), *rng);
  ASSERT_TRUE(shares.ok());
  std::vector<ShamirShare> dup = {(*shares)[0], (*shares)[0]};
  EXPECT_EQ(ShamirReconstruct(dup, 2).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<ShamirShare> out_of_field = {(*shares)[0], (*shares)[1]};
  out_of_field[1].y[2] = kShamirPrime;
  EXPECT_EQ(ShamirReconstruct(out_of_field, 2).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ShamirTest, ShareValueWireForm) {
  auto rng = NewSeededRandom(TestSeed(6));
  auto shares = ShamirSplit(TestSeed(10), 2, Points({5, 6}), *rng);
  ASSERT_TRUE(shares.ok());
  uint8_t wire[kShamirShareBytes];
  EncodeShareValue((*shares)[0].y, wire);
  absl::StatusOr<ShareValue> back = DecodeShareValue(wire);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, (*shares)[0].y);
  std::fill(wire + 8, wire + 16, 0xff);  // element 1 = 2^64 - 1, outside the field
  EXPECT_EQ(DecodeShareValue(wire).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fedfm::secagg
