#include "aggregation/secagg/fixed_point.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace fedfm::secagg {
namespace {

TEST(SecAggFixedPointTest, RoundTripWithinHalfAStep) {
  absl::StatusOr<FixedPointCodec> codec = FixedPointCodec::Create(/*clip=*/2.0, /*q=*/16, 100);
  ASSERT_TRUE(codec.ok());
  std::mt19937 gen(11);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<float> values(1000);
  for (float& v : values) v = dist(gen);
  std::vector<uint32_t> encoded(values.size());
  ASSERT_TRUE(codec->Encode(values, encoded).ok());
  std::vector<float> decoded(values.size());
  codec->Decode(encoded, decoded);
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_NEAR(decoded[i], values[i], std::ldexp(1.0, -17) + 1e-7) << i;
  }
  // Negative values are two's complement.
  std::vector<float> minus = {-1.0f};
  std::vector<uint32_t> enc(1);
  ASSERT_TRUE(codec->Encode(minus, enc).ok());
  EXPECT_EQ(enc[0], static_cast<uint32_t>(-65536));
}

TEST(SecAggFixedPointTest, SumOfEncodingsDecodesToSumOfValues) {
  const int n = 50;
  absl::StatusOr<FixedPointCodec> codec = FixedPointCodec::Create(1.0, 20, n);
  ASSERT_TRUE(codec.ok());
  std::mt19937 gen(12);
  std::uniform_real_distribution<float> dist(-1.5f, 1.5f);  // some values get clipped
  const size_t p = 200;
  std::vector<uint32_t> sum(p, 0);
  std::vector<double> expected(p, 0.0);
  std::vector<float> values(p);
  std::vector<uint32_t> encoded(p);
  for (int c = 0; c < n; ++c) {
    for (size_t i = 0; i < p; ++i) {
      values[i] = dist(gen);
      expected[i] += std::fmax(-1.0, std::fmin(1.0, values[i]));
    }
    ASSERT_TRUE(codec->Encode(values, encoded).ok());
    for (size_t i = 0; i < p; ++i) sum[i] += encoded[i];
  }
  for (size_t i = 0; i < p; ++i) {
    EXPECT_NEAR(codec->DecodeOne(sum[i]), expected[i], n * std::ldexp(1.0, -21) + 1e-9) << i;
  }
}

TEST(SecAggFixedPointTest, ExtremeSumsDoNotOverflow) {
  // n * c * 2^q just below 2^31: n = 127, c = 1, q = 24 -> 127 * 2^24 < 2^31.
  const int n = 127;
  absl::StatusOr<FixedPointCodec> codec = FixedPointCodec::Create(1.0, 24, n);
  ASSERT_TRUE(codec.ok()) << codec.status();
  std::vector<float> hi = {5.0f, -5.0f};  // clipped to +-1
  std::vector<uint32_t> enc(2);
  ASSERT_TRUE(codec->Encode(hi, enc).ok());
  uint32_t plus = 0, minus = 0;
  for (int c = 0; c < n; ++c) {
    plus += enc[0];
    minus += enc[1];
  }
  EXPECT_DOUBLE_EQ(codec->DecodeOne(plus), 127.0);
  EXPECT_DOUBLE_EQ(codec->DecodeOne(minus), -127.0);
}

TEST(SecAggFixedPointTest, NonIntegerScaledClipStaysInRange) {
  // c * 2^q = 0.3 * 2^10 = 307.2: encodings stay within +-307.
  absl::StatusOr<FixedPointCodec> codec = FixedPointCodec::Create(0.3, 10, 1000);
  ASSERT_TRUE(codec.ok());
  EXPECT_EQ(codec->max_encoded(), 307);
  std::vector<float> v = {0.3f, -0.3f, 0.29999f};
  std::vector<uint32_t> enc(3);
  ASSERT_TRUE(codec->Encode(v, enc).ok());
  EXPECT_EQ(static_cast<int32_t>(enc[0]), 307);
  EXPECT_EQ(static_cast<int32_t>(enc[1]), -307);
}

TEST(SecAggFixedPointTest, OverflowCheckNamesNCAndQ) {
  EXPECT_TRUE(CheckNoOverflow(100, 1.0, 16).ok());
  absl::Status s = CheckNoOverflow(100, 1.0, 25);  // 100 * 2^25 > 2^31
  ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(s.message());
  EXPECT_NE(msg.find("n = 100"), std::string::npos) << msg;
  EXPECT_NE(msg.find("c = 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("q = 25"), std::string::npos) << msg;
  // Exactly 2^31 is already too much.
  EXPECT_FALSE(CheckNoOverflow(128, 1.0, 24).ok());
  EXPECT_FALSE(FixedPointCodec::Create(1.0, 24, 128).ok());
  EXPECT_FALSE(CheckNoOverflow(1, 0.0, 16).ok());
  EXPECT_FALSE(CheckNoOverflow(1, std::numeric_limits<double>::infinity(), 16).ok());
  EXPECT_FALSE(CheckNoOverflow(1, 1.0, 0).ok());
  EXPECT_FALSE(CheckNoOverflow(1, 1.0, 31).ok());
  EXPECT_FALSE(CheckNoOverflow(0, 1.0, 16).ok());
}

TEST(SecAggFixedPointTest, NonFiniteValuesAreRefusedByIndex) {
  absl::StatusOr<FixedPointCodec> codec = FixedPointCodec::Create(1.0, 16, 10);
  ASSERT_TRUE(codec.ok());
  std::vector<float> v = {0.5f, 0.25f, std::nanf(""), 0.0f};
  std::vector<uint32_t> enc(4);
  absl::Status s = codec->Encode(v, enc);
  ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("element 2"), std::string::npos) << s;
  v[2] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(codec->Encode(v, enc).ok());
}

}  // namespace
}  // namespace fedfm::secagg
