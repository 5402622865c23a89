#include "zeroth_order/noise.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "protocols/tensor.h"
#include "zeroth_order/internal/noise_math.h"

namespace fedfm::zeroth_order {
namespace {

using internal::FloatBits;

std::vector<float> Fill(const NoiseStream& s, uint64_t offset, size_t n) {
  std::vector<float> z(n);
  FillNoise(s, offset, z);
  return z;
}

void ExpectBits(const std::vector<float>& got, const std::vector<uint32_t>& expected) {
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(FloatBits(got[i]), expected[i]) << "element " << i << " = " << got[i];
  }
}

std::string Signs(const std::vector<float>& z) {
  std::string s;
  for (float v : z) s += v > 0 ? '+' : '-';
  return s;
}

// Known answers of the spec (docs/zeroth_order_noise.md), computed once with
// this implementation and cross-checked against an independent binary32
// emulation in Python (zeroth_order/tools/noise_reference.py). A change here
// changes every replayed perturbation: never update these casually.
TEST(NoiseKnownAnswerTest, GaussianSeed0Tensor0Offset0) {
  ExpectBits(Fill({0, 0, NoiseKind::kGaussian}, 0, 8),
             {0x3f7dbb2f, 0xbf6cb6b3, 0xbf1e1ba1, 0xbef6d1a9, 0xbe1d534f, 0x3e392a6b,
              0x3f54ec98, 0x3e4a2d9a});
}

TEST(NoiseKnownAnswerTest, GaussianUnalignedOffset) {
  ExpectBits(Fill({0x0123456789abcdefull, 3, NoiseKind::kGaussian}, 1000003, 6),
             {0x3f47ac42, 0x3f13f9c0, 0x3fcd3875, 0x3e73245f, 0xbf0e36f5, 0x3f06eef0});
}

TEST(NoiseKnownAnswerTest, GaussianOffsetBeyond32Bits) {
  ExpectBits(Fill({42, 7, NoiseKind::kGaussian}, (uint64_t{1} << 40) + 1, 4),
             {0x3e6bc8d6, 0xbf2ec335, 0x3e5197b2, 0xbf03f391});
}

TEST(NoiseKnownAnswerTest, Rademacher) {
  EXPECT_EQ(Signs(Fill({42, 0, NoiseKind::kRademacher}, 0, 40)),
            "--+-----++-++--+++----+------+---+---+--");
  // Crosses a 128-element Philox block.
  EXPECT_EQ(Signs(Fill({42, 0, NoiseKind::kRademacher}, 125, 8)), "-++-+---");
}

TEST(NoiseTest, GaussianIsBoxMullerOfTheSpecifiedWords) {
  // Element 4b+0/1 from words (x0, x1), 4b+2/3 from (x2, x3); r from the
  // first word, angle from the second; even element cos, odd element sin.
  const NoiseStream s{0xfeedull, 11, NoiseKind::kGaussian};
  for (uint64_t block : {uint64_t{0}, uint64_t{5}, uint64_t{1} << 33}) {
    const Philox4x32Counter x = Philox4x32_10(
        {{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 11u, 0u}},
        PhiloxKeyFromSeed(0xfeedull));
    const std::vector<float> z = Fill(s, block * 4, 4);
    for (int pair = 0; pair < 2; ++pair) {
      const double u1 = ((x.v[2 * pair] >> 8) + 1) * 0x1p-24;
      const double angle = 2 * M_PI * (x.v[2 * pair + 1] >> 8) * 0x1p-24;
      const double r = std::sqrt(-2 * std::log(u1));
      EXPECT_NEAR(z[2 * pair], r * std::cos(angle), 4e-7 * (1 + r));
      EXPECT_NEAR(z[2 * pair + 1], r * std::sin(angle), 4e-7 * (1 + r));
    }
  }
}

// Exhaustive over all 2^24 inputs the spec can produce.
TEST(NoiseTest, LogIsWithinOneUlpOverItsWholeDomain) {
  double worst_ulps = 0;
  for (uint32_t k = 0; k < (1u << 24); ++k) {
    const float u = internal::UniformOpen0(k << 8);
    const float got = internal::LogUnit(u);
    const double ref = std::log(static_cast<double>(u));
    if (u == 1.0f) {
      ASSERT_EQ(got, 0.0f);
      continue;
    }
    ASSERT_LT(got, 0.0f) << "u = " << u;
    const double ulp = std::ldexp(1.0, std::ilogb(static_cast<float>(ref)) - 23);
    worst_ulps = std::max(worst_ulps, std::fabs(got - ref) / ulp);
  }
  EXPECT_LT(worst_ulps, 1.0);  // measured 0.83
}

TEST(NoiseTest, SinCosAreAccurateOverAllAngles) {
  double worst = 0;
  for (uint32_t q = 0; q < (1u << 24); ++q) {
    float c, s;
    internal::SinCosTurns24(q, &c, &s);
    const double angle = 2 * M_PI * q * 0x1p-24;
    worst = std::max({worst, std::fabs(c - std::cos(angle)), std::fabs(s - std::sin(angle))});
  }
  EXPECT_LT(worst, 2 * 0x1p-24);  // measured 1.64 * 2^-24
}

TEST(NoiseTest, GaussianIsBoundedByTheSmallestUniform) {
  float r = internal::FSqrt(internal::FMul(-2.0f, internal::LogUnit(internal::UniformOpen0(0))));
  EXPECT_NEAR(r, std::sqrt(48 * std::log(2.0)), 1e-6);
  const std::vector<float> z = Fill({3, 1, NoiseKind::kGaussian}, 0, 1 << 16);
  for (float v : z) ASSERT_LE(std::fabs(v), r);
}

TEST(NoiseTest, GaussianMomentsMatchStandardNormal) {
  constexpr size_t kN = 1'000'000;
  const std::vector<float> z = Fill({20240917, 2, NoiseKind::kGaussian}, 17, kN);
  double m1 = 0, m2 = 0, m3 = 0, m4 = 0;
  size_t beyond_2 = 0, within_1 = 0;
  for (float v : z) {
    const double x = v;
    m1 += x;
    m2 += x * x;
    m3 += x * x * x;
    m4 += x * x * x * x;
    beyond_2 += std::fabs(x) > 2;
    within_1 += std::fabs(x) < 1;
  }
  m1 /= kN, m2 /= kN, m3 /= kN, m4 /= kN;
  // Bounds at about 5 standard errors (se: 1/sqrt(n), sqrt(2/n), sqrt(6/n),
  // sqrt(96/n); binomial for the tail fractions).
  EXPECT_NEAR(m1, 0.0, 0.005);
  EXPECT_NEAR(m2, 1.0, 0.0075);
  EXPECT_NEAR(m3, 0.0, 0.013);
  EXPECT_NEAR(m4, 3.0, 0.05);
  EXPECT_NEAR(static_cast<double>(beyond_2) / kN, 0.0455003, 0.001);
  EXPECT_NEAR(static_cast<double>(within_1) / kN, 0.6826895, 0.0024);
}

TEST(NoiseTest, GaussianNeighboursAreUncorrelated) {
  constexpr size_t kN = 1'000'000;
  const std::vector<float> z = Fill({99, 0, NoiseKind::kGaussian}, 0, kN);
  for (size_t lag : {1, 2, 3, 4}) {
    double c = 0;
    for (size_t i = 0; i + lag < kN; ++i) c += static_cast<double>(z[i]) * z[i + lag];
    EXPECT_NEAR(c / (kN - lag), 0.0, 0.005) << "lag " << lag;
  }
}

TEST(NoiseTest, RademacherIsBalancedAndUncorrelated) {
  constexpr size_t kN = 1'000'000;
  const std::vector<float> z = Fill({7, 5, NoiseKind::kRademacher}, 3, kN);
  double sum = 0, lag1 = 0, lag32 = 0;
  for (size_t i = 0; i < kN; ++i) {
    ASSERT_TRUE(z[i] == 1.0f || z[i] == -1.0f) << z[i];
    sum += z[i];
    if (i + 1 < kN) lag1 += z[i] * z[i + 1];
    if (i + 32 < kN) lag32 += z[i] * z[i + 32];
  }
  EXPECT_NEAR(sum / kN, 0.0, 0.005);
  EXPECT_NEAR(lag1 / kN, 0.0, 0.005);
  EXPECT_NEAR(lag32 / kN, 0.0, 0.005);
}

TEST(NoiseTest, StreamsDifferBySeedTensorAndKind) {
  const std::vector<float> base = Fill({1, 0, NoiseKind::kGaussian}, 0, 64);
  EXPECT_NE(base, Fill({2, 0, NoiseKind::kGaussian}, 0, 64));
  EXPECT_NE(base, Fill({1, 1, NoiseKind::kGaussian}, 0, 64));
  EXPECT_NE(base, Fill({uint64_t{1} << 32 | 1, 0, NoiseKind::kGaussian}, 0, 64));
  EXPECT_NE(Fill({1, 0, NoiseKind::kRademacher}, 0, 64), Fill({1, 1, NoiseKind::kRademacher}, 0, 64));
}

TEST(NoiseTest, AnyChunkingGivesTheSameBits) {
  for (NoiseKind kind : {NoiseKind::kGaussian, NoiseKind::kRademacher}) {
    const NoiseStream s{0xabcdefull, 9, kind};
    const std::vector<float> whole = Fill(s, 0, 5000);
    std::vector<float> pieces;
    for (size_t begin = 0, step = 1; begin < whole.size(); begin += step, step = step * 3 + 1) {
      const size_t n = std::min(step, whole.size() - begin);
      const std::vector<float> part = Fill(s, begin, n);
      pieces.insert(pieces.end(), part.begin(), part.end());
    }
    ASSERT_EQ(pieces.size(), whole.size());
    for (size_t i = 0; i < whole.size(); ++i) {
      ASSERT_EQ(FloatBits(pieces[i]), FloatBits(whole[i])) << i;
      ASSERT_EQ(FloatBits(NoiseAt(s, i)), FloatBits(whole[i])) << i;
    }
  }
}

TEST(NoiseTest, ThreadCountDoesNotChangeBits) {
  constexpr size_t kN = 300'007;  // enough for 4 threads of the minimum size
  for (NoiseKind kind : {NoiseKind::kGaussian, NoiseKind::kRademacher}) {
    const NoiseStream s{0x5eedull, 4, kind};
    std::vector<float> one(kN), four(kN), three(kN);
    ParallelFillNoise(s, 11, one, 1);
    ParallelFillNoise(s, 11, four, 4);
    ParallelFillNoise(s, 11, three, 3);
    ASSERT_EQ(0, std::memcmp(one.data(), four.data(), kN * sizeof(float)));
    ASSERT_EQ(0, std::memcmp(one.data(), three.data(), kN * sizeof(float)));

    std::vector<float> theta1(kN), theta4(kN);
    for (size_t i = 0; i < kN; ++i) theta1[i] = theta4[i] = std::sin(0.001f * i);
    ParallelAddScaledNoise(s, 11, 1e-3f, theta1, 1);
    ParallelAddScaledNoise(s, 11, 1e-3f, theta4, 4);
    ASSERT_EQ(0, std::memcmp(theta1.data(), theta4.data(), kN * sizeof(float)));

    std::vector<uint16_t> b1(kN), b4(kN);
    for (size_t i = 0; i < kN; ++i) b1[i] = b4[i] = protocols::FloatToBf16(std::cos(0.01f * i));
    ParallelAddScaledNoiseBf16(s, 11, 1e-2f, b1, 1);
    ParallelAddScaledNoiseBf16(s, 11, 1e-2f, b4, 4);
    ASSERT_EQ(b1, b4);
  }
}

TEST(NoiseTest, AddScaledNoiseIsTwoRoundedFloatOps) {
  const NoiseStream s{77, 2, NoiseKind::kGaussian};
  constexpr size_t kN = 3001;
  const std::vector<float> z = Fill(s, 5, kN);
  std::vector<float> theta(kN);
  std::vector<uint16_t> theta16(kN);
  for (size_t i = 0; i < kN; ++i) {
    theta[i] = 0.37f * std::sin(static_cast<float>(i));
    theta16[i] = protocols::FloatToBf16(theta[i]);
  }
  std::vector<float> got = theta;
  std::vector<uint16_t> got16 = theta16;
  const float alpha = -3.7e-3f;
  AddScaledNoise(s, 5, alpha, got);
  AddScaledNoiseBf16(s, 5, alpha, got16);
  for (size_t i = 0; i < kN; ++i) {
    volatile float product = alpha * z[i];  // volatile: keeps the reference unfused
    const float want = theta[i] + product;
    ASSERT_EQ(FloatBits(got[i]), FloatBits(want)) << i;
    volatile float product16 = alpha * z[i];
    const float want16 = protocols::Bf16ToFloat(theta16[i]) + product16;
    ASSERT_EQ(got16[i], protocols::FloatToBf16(want16)) << i;
  }
}

TEST(NoiseTest, Bf16RoundingMatchesProtocols) {
  for (uint32_t hi = 0; hi < 0x10000; hi += 7) {
    for (uint32_t lo : {0u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu, 0x1234u}) {
      const float f = internal::BitsFloat(hi << 16 | lo);
      ASSERT_EQ(internal::FloatToBf16Bits(f), protocols::FloatToBf16(f)) << std::hex << (hi << 16 | lo);
    }
  }
}

TEST(NoiseTest, TensorMapUsesInsertionPositionAsTensorIndex) {
  protocols::TensorMap state;
  std::vector<float> a(37), b(64);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 0.1f * i;
  for (size_t i = 0; i < b.size(); ++i) b[i] = -0.05f * i;
  ASSERT_TRUE(state.Insert("layer.w", protocols::Tensor::FromFloats({37}, a)).ok());
  ASSERT_TRUE(
      state.Insert("layer.b", protocols::Tensor::FromFloats({8, 8}, b).To(protocols::DType::kBF16))
          .ok());
  ASSERT_TRUE(AddScaledNoise(state, /*seed=*/123, NoiseKind::kGaussian, 0.5f).ok());

  std::vector<float> want_a = a;
  AddScaledNoise({123, 0, NoiseKind::kGaussian}, 0, 0.5f, want_a);
  EXPECT_EQ(state.at("layer.w").ToFloat32(), want_a);
  std::vector<uint16_t> want_b(b.size());
  for (size_t i = 0; i < b.size(); ++i) want_b[i] = protocols::FloatToBf16(b[i]);
  AddScaledNoiseBf16({123, 1, NoiseKind::kGaussian}, 0, 0.5f, want_b);
  const protocols::Tensor& got_b = state.at("layer.b");
  ASSERT_EQ(got_b.dtype(), protocols::DType::kBF16);
  EXPECT_EQ(0, std::memcmp(got_b.bytes().data(), want_b.data(), want_b.size() * 2));
}

TEST(NoiseTest, TensorMapRejectsNonFloatTensorsUntouched) {
  protocols::TensorMap state;
  std::vector<float> a = {1, 2, 3};
  ASSERT_TRUE(state.Insert("w", protocols::Tensor::FromFloats({3}, a)).ok());
  ASSERT_TRUE(state.Insert("ids", protocols::Tensor::Zeros(protocols::DType::kI32, {4})).ok());
  const absl::Status st = AddScaledNoise(state, 1, NoiseKind::kGaussian, 1.0f);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("\"ids\""), std::string::npos) << st;
  EXPECT_EQ(state.at("w").ToFloat32(), a);
}

TEST(NoiseTest, ParsesNoiseKindNames) {
  EXPECT_EQ(*ParseNoiseKind("gaussian"), NoiseKind::kGaussian);
  EXPECT_EQ(*ParseNoiseKind("rademacher"), NoiseKind::kRademacher);
  EXPECT_EQ(ParseNoiseKind("uniform").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_STREQ(NoiseKindName(NoiseKind::kRademacher), "rademacher");
}

}  // namespace
}  // namespace fedfm::zeroth_order
