#include "protocols/tensor.h"

#include <cmath>
#include <limits>
#include <random>

#include "gtest/gtest.h"

namespace fedfm::protocols {
namespace {

std::vector<float> RandomFloats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(DTypeTest, NamesRoundTrip) {
  for (int i = 0; i < kNumDTypes; ++i) {
    auto dtype = static_cast<DType>(i);
    auto parsed = DTypeFromName(DTypeName(dtype));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, dtype);
  }
  EXPECT_FALSE(DTypeFromName("F8").ok());
}

TEST(Bf16Test, RoundsToNearestEven) {
  // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even (1.0).
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + 1.0f / 256)), 1.0f);
  // 1 + 3 * 2^-8 is halfway between 1.0078125 (odd mantissa) and 1.015625: rounds up.
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + 3.0f / 256)), 1.015625f);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
  for (float x : RandomFloats(1000, 1)) {
    float y = Bf16ToFloat(FloatToBf16(x));
    EXPECT_LE(std::fabs(x - y), std::fabs(x) * (1.0f / 256)) << x;
  }
}

TEST(F16Test, MatchesKnownValues) {
  EXPECT_EQ(FloatToF16(1.0f), 0x3C00);
  EXPECT_EQ(FloatToF16(-2.0f), 0xC000);
  EXPECT_EQ(FloatToF16(65504.0f), 0x7BFF);
  EXPECT_EQ(FloatToF16(1e6f), 0x7C00);                 // overflow to +inf
  EXPECT_EQ(FloatToF16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(F16ToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(F16ToFloat(0x3555), 0.333251953125f);
  for (float x : RandomFloats(1000, 2)) {
    float y = F16ToFloat(FloatToF16(x));
    EXPECT_LE(std::fabs(x - y), std::max(std::fabs(x) / 2048, std::ldexp(1.0f, -25))) << x;
  }
  // Every finite half value survives half -> float -> half exactly.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if (((h >> 10) & 0x1F) == 0x1F) continue;
    ASSERT_EQ(FloatToF16(F16ToFloat(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
}

TEST(TensorTest, CopyOnWriteKeepsCopiesIndependent) {
  std::vector<float> v = RandomFloats(12, 3);
  Tensor a = Tensor::FromFloats({3, 4}, v);
  Tensor b = a;
  b.mutable_floats()[0] += 1.0f;
  EXPECT_EQ(a.floats()[0], v[0]);
  EXPECT_EQ(b.floats()[0], v[0] + 1.0f);
  EXPECT_FALSE(a.Identical(b));
}

TEST(TensorTest, ConversionsRoundTripWithinPrecision) {
  std::vector<float> v = RandomFloats(257, 4);
  Tensor t = Tensor::FromFloats({257}, v);
  for (DType d : {DType::kF32, DType::kBF16, DType::kF16, DType::kI8, DType::kF64}) {
    std::vector<float> back = t.To(d).ToFloat32();
    float max_abs = 0.0f;
    for (float x : v) max_abs = std::max(max_abs, std::fabs(x));
    for (size_t i = 0; i < v.size(); ++i) {
      float tol = d == DType::kI8 ? max_abs / 127 : std::fabs(v[i]) / 100 + 1e-6f;
      EXPECT_NEAR(back[i], v[i], tol) << DTypeName(d) << " at " << i;
    }
  }
}

TEST(TensorTest, ViewCopiesMisalignedBytes) {
  auto storage = std::make_shared<std::vector<std::byte>>(4 * 5 + 1);
  std::span<const std::byte> misaligned(storage->data() + 1, 20);
  Tensor t = Tensor::View(DType::kF32, {5}, storage, misaligned);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.bytes().data()) % alignof(float), 0u);
}

TEST(TensorMapTest, KeepsInsertionOrderAndRejectsDuplicates) {
  TensorMap map;
  ASSERT_TRUE(map.Insert("z", Tensor::Zeros(DType::kF32, {2})).ok());
  ASSERT_TRUE(map.Insert("a", Tensor::Zeros(DType::kBF16, {3, 2})).ok());
  absl::Status dup = map.Insert("z", Tensor::Zeros(DType::kF32, {1}));
  EXPECT_EQ(dup.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(dup.message().find("\"z\""), std::string_view::npos);
  EXPECT_EQ(map.names(), (std::vector<std::string>{"z", "a"}));
  EXPECT_EQ(map.TotalElements(), 8);
  EXPECT_EQ(map.TotalBytes(), 2 * 4 + 6 * 2u);
}

}  // namespace
}  // namespace fedfm::protocols
