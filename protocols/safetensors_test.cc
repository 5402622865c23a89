#include "protocols/safetensors.h"

#include <cstring>
#include <filesystem>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "protocols/file_util.h"

namespace fedfm::protocols {
namespace {

std::vector<std::byte> Craft(const std::string& header, size_t data_bytes) {
  std::vector<std::byte> out(8 + header.size() + data_bytes, std::byte{0x11});
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

std::string ErrorOf(const std::vector<std::byte>& bytes) {
  auto parsed = ParseSafetensors(bytes);
  EXPECT_FALSE(parsed.ok());
  return std::string(parsed.status().message());
}

TEST(SafetensorsTest, WriteThenReadIsIdenticalForEveryDType) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist;
  TensorMap map;
  int i = 0;
  for (DType d : {DType::kF32, DType::kBF16, DType::kF16, DType::kI8, DType::kI64, DType::kF64}) {
    std::vector<float> v(15);
    for (float& x : v) x = dist(rng) * 10;
    Tensor t = Tensor::FromFloats({3, 5}, v).To(d);
    if (d == DType::kI8) t = *Tensor::FromBytes(d, {3, 5}, t.bytes());  // safetensors has no scale
    ASSERT_TRUE(map.Insert("t" + std::to_string(i++), t).ok());
  }
  auto dir = std::filesystem::temp_directory_path() / ("fedfm_st_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto path = dir / "model.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, map, {{"format", "pt"}}).ok());
  auto read = ReadSafetensors(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->metadata.at("format"), "pt");
  ASSERT_EQ(read->tensors.size(), map.size());
  for (const auto& [name, t] : map) EXPECT_TRUE(read->tensors.at(name).Identical(t)) << name;
  std::filesystem::remove_all(dir);
}

TEST(SafetensorsTest, RejectsTruncatedFiles) {
  EXPECT_NE(ErrorOf(Craft("", 0)).find("header"), std::string::npos);  // empty JSON
  std::vector<std::byte> tiny(5);
  EXPECT_NE(ErrorOf(tiny).find("shorter than its 8-byte header"), std::string::npos);
  auto file = Craft(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 16);
  file.resize(file.size() - 4);
  std::string err = ErrorOf(file);
  EXPECT_NE(err.find("\"w\""), std::string::npos) << err;
  EXPECT_NE(err.find("past the end"), std::string::npos) << err;
}

TEST(SafetensorsTest, RejectsHeaderLongerThanFileOrLimit) {
  auto file = Craft("{}", 0);
  uint64_t huge = 1000;
  std::memcpy(file.data(), &huge, 8);
  EXPECT_NE(ErrorOf(file).find("runs past the end"), std::string::npos);
  huge = kMaxSafetensorsHeaderBytes + 1;
  std::memcpy(file.data(), &huge, 8);
  EXPECT_NE(ErrorOf(file).find("exceeds the limit"), std::string::npos);
}

TEST(SafetensorsTest, RejectsOffsetsOutOfRangeOrOverlapping) {
  std::string err = ErrorOf(Craft(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 8));
  EXPECT_NE(err.find("\"w\""), std::string::npos) << err;
  err = ErrorOf(Craft(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                      12));
  EXPECT_NE(err.find("overlap"), std::string::npos) << err;
  EXPECT_NE(err.find("\"b\""), std::string::npos) << err;
  err = ErrorOf(Craft(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8));
  EXPECT_NE(err.find("reversed"), std::string::npos) << err;
}

TEST(SafetensorsTest, RejectsWrongDTypeAndShapeMismatch) {
  std::string err = ErrorOf(Craft(R"({"w":{"dtype":"F8","shape":[2],"data_offsets":[0,2]}})", 2));
  EXPECT_NE(err.find("unknown dtype"), std::string::npos) << err;
  err = ErrorOf(Craft(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8));
  EXPECT_NE(err.find("does not fit 8 bytes"), std::string::npos) << err;
  err = ErrorOf(Craft(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}})", 8));
  EXPECT_NE(err.find("shape"), std::string::npos) << err;
  err = ErrorOf(Craft(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)", 8));
  EXPECT_NE(err.find("not valid JSON"), std::string::npos) << err;
}

TEST(SafetensorsTest, MissingFileIsNotFound) {
  auto read = ReadSafetensors("no/such/file.safetensors");
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(read.status().message().find("no/such/file.safetensors"), std::string_view::npos);
}

}  // namespace
}  // namespace fedfm::protocols
