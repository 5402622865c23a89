#include "protocols/tensor_codec.h"

#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace fedfm::protocols {
namespace {

TensorMap RandomMap(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  TensorMap map;
  const Shape shapes[] = {{7}, {3, 5}, {2, 3, 4}, {1}, {0, 4}};
  int i = 0;
  for (const Shape& shape : shapes) {
    std::vector<float> v(static_cast<size_t>(NumElements(shape)));
    for (float& x : v) x = dist(rng);
    EXPECT_TRUE(map.Insert("layers." + std::to_string(i++) + ".w", Tensor::FromFloats(shape, v)).ok());
  }
  return map;
}

TEST(TensorCodecTest, RoundTripsEveryDType) {
  TensorMap map = RandomMap(1);
  for (DType d : {DType::kF32, DType::kBF16, DType::kF16, DType::kI8}) {
    EncodeOptions options{.wire_dtype = d};
    std::vector<std::byte> bytes = EncodeTensorMap(map, options);
    EXPECT_EQ(bytes.size(), EncodedSize(map, options));
    auto decoded = DecodeTensorMap(bytes);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    ASSERT_EQ(decoded->names(), map.names());
    for (const auto& [name, t] : map) {
      const Tensor& back = decoded->at(name);
      EXPECT_EQ(back.dtype(), d);
      EXPECT_TRUE(back.Identical(t.To(d))) << name << " " << DTypeName(d);
    }
  }
}

TEST(TensorCodecTest, StreamEncoderPiecesEqualTheWholeEncoding) {
  TensorMap map = RandomMap(6);
  for (std::optional<DType> wire : {std::optional<DType>(), std::optional<DType>(DType::kBF16)}) {
    EncodeOptions options{.wire_dtype = wire};
    const std::vector<std::byte> whole = EncodeTensorMap(map, options);
    ASSERT_EQ(whole.size(), EncodedSize(map, options));
    for (size_t piece : {1u, 5u, 33u, 100000u}) {
      StreamEncoder encoder(map, options);
      EXPECT_EQ(encoder.size(), whole.size());
      std::vector<std::byte> joined, buffer(piece);
      while (encoder.remaining() > 0) {
        const size_t n = encoder.Next(buffer);
        ASSERT_EQ(n, std::min<size_t>(piece, whole.size() - joined.size()));
        joined.insert(joined.end(), buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
      }
      EXPECT_EQ(encoder.Next(buffer), 0u);
      EXPECT_TRUE(joined == whole) << "pieces of " << piece;
    }
  }
}

TEST(TensorCodecTest, ChunkedStreamEqualsWholeDecode) {
  TensorMap map = RandomMap(2);
  std::vector<std::byte> bytes = EncodeTensorMap(map);
  for (size_t chunk : {1u, 3u, 17u, 4096u}) {
    StreamDecoder decoder;
    for (auto piece : SplitChunks(bytes, chunk)) ASSERT_TRUE(decoder.Append(piece).ok());
    auto decoded = decoder.Finish();
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    for (const auto& [name, t] : map) EXPECT_TRUE(decoded->at(name).Identical(t));
  }
}

TEST(TensorCodecTest, TruncationNamesTheOffset) {
  std::vector<std::byte> bytes = EncodeTensorMap(RandomMap(3));
  for (size_t cut : {size_t{5}, size_t{20}, bytes.size() - 1}) {
    auto decoded = DecodeTensorMap(std::span(bytes).first(cut));
    ASSERT_FALSE(decoded.ok()) << cut;
    EXPECT_NE(decoded.status().message().find("truncated"), std::string_view::npos) << decoded.status();
  }
}

TEST(TensorCodecTest, CorruptFieldsAreRejectedWithTheTensorName) {
  TensorMap map;
  ASSERT_TRUE(map.Insert("w", Tensor::FromFloats({2}, std::vector<float>{1, 2})).ok());
  std::vector<std::byte> good = EncodeTensorMap(map);
  // header 12 | name len 4 | "w" @16 | dtype @17 | rank @18 | dim @19 | scale @27 | payload bytes @31
  auto corrupt = [&](size_t at, std::byte value) {
    std::vector<std::byte> b = good;
    b[at] = value;
    return DecodeTensorMap(b).status();
  };
  absl::Status bad_dtype = corrupt(17, std::byte{200});
  EXPECT_NE(bad_dtype.message().find("tensor \"w\""), std::string_view::npos) << bad_dtype;
  EXPECT_NE(bad_dtype.message().find("dtype"), std::string_view::npos);
  absl::Status bad_dim = corrupt(19, std::byte{3});  // shape [3] vs 8 payload bytes
  EXPECT_NE(bad_dim.message().find("does not match shape"), std::string_view::npos) << bad_dim;
  EXPECT_FALSE(corrupt(0, std::byte{'X'}).ok());
  std::vector<std::byte> trailing = good;
  trailing.push_back(std::byte{0});
  EXPECT_NE(DecodeTensorMap(trailing).status().message().find("trailing"), std::string_view::npos);
}

TEST(TensorCodecTest, TrailingBytesInALaterChunkNameTheirOffset) {
  std::vector<std::byte> bytes = EncodeTensorMap(RandomMap(5));
  StreamDecoder decoder;
  ASSERT_TRUE(decoder.Append(bytes).ok());
  const std::vector<std::byte> extra(3, std::byte{7});
  absl::Status status = decoder.Append(extra);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find(absl::StrCat("offset ", bytes.size(), ": 3 trailing bytes")), std::string_view::npos)
      << status;
  EXPECT_FALSE(decoder.Finish().ok());
}

TEST(TensorCodecTest, EnforcesSizeLimitWhileStreaming) {
  std::vector<std::byte> bytes = EncodeTensorMap(RandomMap(4));
  StreamDecoder decoder(DecodeLimits{.max_total_bytes = 64});
  absl::Status status;
  for (auto piece : SplitChunks(bytes, 16)) {
    status = decoder.Append(piece);
    if (!status.ok()) break;
  }
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_LE(decoder.bytes_seen(), 64u + 16u);
}

}  // namespace
}  // namespace fedfm::protocols
