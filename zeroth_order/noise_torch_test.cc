#include "zeroth_order/noise_torch.h"

#include <torch/torch.h>

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "protocols/tensor.h"
#include "zeroth_order/noise.h"

namespace fedfm::zeroth_order {
namespace {

torch::Tensor RandomParams(int64_t n, torch::ScalarType dtype, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  FillNoise({seed, 0, NoiseKind::kGaussian}, 0, v);
  return torch::from_blob(v.data(), {n}, torch::kFloat32).clone().mul_(0.1).to(dtype);
}

TEST(NoiseTorchTest, CpuFloatMatchesTheCoreBitForBit) {
  for (NoiseKind kind : {NoiseKind::kGaussian, NoiseKind::kRademacher}) {
    for (uint64_t offset : {uint64_t{0}, uint64_t{13}}) {
      const NoiseStream s{0xc0ffeeull, 3, kind};
      const int64_t n = 100003;  // several at::parallel_for tasks
      torch::Tensor t = RandomParams(n, torch::kFloat32, 1);
      std::vector<float> want(t.data_ptr<float>(), t.data_ptr<float>() + n);
      ASSERT_TRUE(AddScaledNoise(t, s, -2.5e-3f, offset).ok());
      zeroth_order::AddScaledNoise(s, offset, -2.5e-3f, want);
      ASSERT_EQ(0, std::memcmp(t.data_ptr<float>(), want.data(), n * sizeof(float)));

      absl::StatusOr<torch::Tensor> z = NoiseTensor(s, {7, n / 7}, torch::kCPU, offset);
      ASSERT_TRUE(z.ok()) << z.status();
      EXPECT_EQ(z->sizes(), (std::vector<int64_t>{7, n / 7}));
      std::vector<float> zref(static_cast<size_t>(z->numel()));
      FillNoise(s, offset, zref);
      ASSERT_EQ(0, std::memcmp(z->data_ptr<float>(), zref.data(), zref.size() * sizeof(float)));
    }
  }
}

TEST(NoiseTorchTest, CpuBf16MatchesTheCoreBitForBit) {
  const NoiseStream s{77, 1, NoiseKind::kGaussian};
  const int64_t n = 70001;
  torch::Tensor t = RandomParams(n, torch::kBFloat16, 2);
  std::vector<uint16_t> want(static_cast<size_t>(n));
  std::memcpy(want.data(), t.data_ptr<at::BFloat16>(), n * 2);
  ASSERT_TRUE(AddScaledNoise(t, s, 0.01f).ok());
  AddScaledNoiseBf16(s, 0, 0.01f, want);
  ASSERT_EQ(0, std::memcmp(t.data_ptr<at::BFloat16>(), want.data(), n * 2));
}

TEST(NoiseTorchTest, TorchThreadCountDoesNotChangeBits) {
  const int threads = at::get_num_threads();
  const NoiseStream s{5, 0, NoiseKind::kGaussian};
  torch::Tensor a = RandomParams(200000, torch::kFloat32, 3);
  torch::Tensor b = a.clone();
  at::set_num_threads(1);
  ASSERT_TRUE(AddScaledNoise(a, s, 0.3f).ok());
  at::set_num_threads(2);
  ASSERT_TRUE(AddScaledNoise(b, s, 0.3f).ok());
  at::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(a, b));
}

TEST(NoiseTorchTest, SpansAreTheSameAsOneCallPerSpan) {
  torch::Tensor flat = torch::arange(1000, torch::kFloat32).sin_().mul_(0.1);
  torch::Tensor bf16 = torch::arange(300, torch::kFloat32).cos_().to(torch::kBFloat16);
  torch::Tensor want = flat.clone(), want_bf16 = bf16.clone();
  ASSERT_TRUE(AddScaledNoise(want.narrow(0, 0, 400), {5, 0, NoiseKind::kGaussian}, 0.5f, 0).ok());
  ASSERT_TRUE(AddScaledNoise(want.narrow(0, 400, 600), {5, 3, NoiseKind::kGaussian}, 0.5f, 17).ok());
  ASSERT_TRUE(AddScaledNoise(want_bf16, {5, 1, NoiseKind::kGaussian}, 0.5f, 0).ok());
  const std::vector<NoiseSpan> spans = {
      {flat.narrow(0, 0, 400), 0, 0}, {flat.narrow(0, 400, 600), 3, 17}, {bf16, 1, 0}};
  ASSERT_TRUE(AddScaledNoiseSpans(spans, 5, NoiseKind::kGaussian, 0.5f).ok());
  EXPECT_TRUE(torch::equal(flat, want));
  EXPECT_TRUE(torch::equal(bf16, want_bf16));
  EXPECT_FALSE(AddScaledNoiseSpans(std::vector<NoiseSpan>{{torch::zeros({4}, torch::kInt)}}, 5,
                                   NoiseKind::kGaussian, 0.5f)
                   .ok());
}

TEST(NoiseTorchTest, RejectsUntrainableTensors) {
  const NoiseStream s{1, 0, NoiseKind::kGaussian};
  EXPECT_EQ(AddScaledNoise(torch::zeros({4}, torch::kInt32), s, 1.0f).code(),
            absl::StatusCode::kInvalidArgument);
  torch::Tensor m = torch::ones({4, 4});
  EXPECT_EQ(AddScaledNoise(m.t(), s, 1.0f).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(torch::equal(m, torch::ones({4, 4})));
  EXPECT_EQ(AddScaledNoise(torch::Tensor(), s, 1.0f).code(), absl::StatusCode::kInvalidArgument);
}

TEST(NoiseTorchTest, InPlaceUpdateBumpsTheVersion) {
  torch::Tensor t = torch::ones({8}, torch::requires_grad());
  const auto before = t._version();
  ASSERT_TRUE(AddScaledNoise(t, {1, 0, NoiseKind::kGaussian}, 1.0f).ok());
  EXPECT_GT(t._version(), before);
}

}  // namespace
}  // namespace fedfm::zeroth_order
