// CUDA kernels against the CPU reference. Skips without a CUDA device or
// without FEDFM_CUDA (then the binary still builds and passes).
#include <torch/torch.h>

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "zeroth_order/noise.h"
#include "zeroth_order/noise_torch.h"

namespace fedfm::zeroth_order {
namespace {

// Why the CUDA tests cannot run here, or nullptr.
const char* CudaMissing() {
  if (!torch::cuda::is_available()) return "no CUDA device";
  if (!CudaNoiseAvailable()) return "fedfm built without FEDFM_CUDA";
  return nullptr;
}

torch::Tensor RandomParams(int64_t n, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  FillNoise({seed, 0, NoiseKind::kGaussian}, 0, v);
  return torch::from_blob(v.data(), {n}, torch::kFloat32).clone().mul_(0.05);
}

TEST(NoiseGpuTest, NoiseIsBitIdenticalToTheCpu) {
  if (const char* why = CudaMissing()) GTEST_SKIP() << why;
  for (NoiseKind kind : {NoiseKind::kGaussian, NoiseKind::kRademacher}) {
    for (uint64_t offset : {uint64_t{0}, uint64_t{3}, uint64_t{130}, (uint64_t{1} << 33) + 1}) {
      const NoiseStream s{0x0123456789abcdefull, 5, kind};
      const int64_t n = 1000003;
      absl::StatusOr<torch::Tensor> gpu = NoiseTensor(s, {n}, torch::Device(torch::kCUDA, 0), offset);
      ASSERT_TRUE(gpu.ok()) << gpu.status();
      const torch::Tensor back = gpu->cpu();
      std::vector<float> cpu(static_cast<size_t>(n));
      FillNoise(s, offset, cpu);
      int64_t mismatches = 0;
      for (int64_t i = 0; i < n; ++i) {
        mismatches += std::memcmp(back.data_ptr<float>() + i, &cpu[i], sizeof(float)) != 0;
      }
      EXPECT_EQ(mismatches, 0) << NoiseKindName(kind) << " offset " << offset;
    }
  }
}

// Spans of one flat buffer perturbed in batched launches (more spans than
// one launch takes, odd offsets and lengths, an empty span) give the CPU's bits.
TEST(NoiseGpuTest, BatchedSpansMatchTheCpu) {
  if (const char* why = CudaMissing()) GTEST_SKIP() << why;
  const int64_t num_spans = 150;
  std::vector<int64_t> lengths;
  int64_t total = 0;
  for (int64_t i = 0; i < num_spans; ++i) {
    lengths.push_back(i == 7 ? 0 : 1 + (i * 7919) % 5003);
    total += lengths.back();
  }
  const torch::Tensor theta = RandomParams(total, 3);
  for (NoiseKind kind : {NoiseKind::kGaussian, NoiseKind::kRademacher}) {
    torch::Tensor cpu = theta.clone(), gpu = theta.to(torch::kCUDA);
    std::vector<NoiseSpan> cpu_spans, gpu_spans;
    int64_t at = 0;
    for (int64_t i = 0; i < num_spans; ++i) {
      const auto index = static_cast<uint32_t>(i % 11);
      const uint64_t offset = static_cast<uint64_t>(i * 13);
      cpu_spans.push_back({cpu.narrow(0, at, lengths[i]), index, offset});
      gpu_spans.push_back({gpu.narrow(0, at, lengths[i]), index, offset});
      at += lengths[i];
    }
    ASSERT_TRUE(AddScaledNoiseSpans(cpu_spans, 77, kind, -2e-3f).ok());
    ASSERT_TRUE(AddScaledNoiseSpans(gpu_spans, 77, kind, -2e-3f).ok());
    EXPECT_TRUE(torch::equal(gpu.cpu(), cpu)) << NoiseKindName(kind);
    EXPECT_FALSE(torch::equal(cpu, theta)) << NoiseKindName(kind);
  }
}

TEST(NoiseGpuTest, FusedUpdateMatchesTheCpu) {
  if (const char* why = CudaMissing()) GTEST_SKIP() << why;
  for (NoiseKind kind : {NoiseKind::kGaussian, NoiseKind::kRademacher}) {
    const NoiseStream s{42, 2, kind};
    const int64_t n = 777777;
    const torch::Tensor theta = RandomParams(n, 9);
    for (torch::ScalarType dtype : {torch::kFloat32, torch::kBFloat16}) {
      torch::Tensor cpu = theta.to(dtype);
      torch::Tensor gpu = cpu.to(torch::kCUDA);
      ASSERT_TRUE(AddScaledNoise(cpu, s, 1e-3f, 11).ok());
      ASSERT_TRUE(AddScaledNoise(gpu, s, 1e-3f, 11).ok());
      const torch::Tensor back = gpu.cpu();
      // The spec makes both exact; report the largest difference if not.
      const double max_diff = (back.to(torch::kFloat64) - cpu.to(torch::kFloat64)).abs().max().item<double>();
      EXPECT_EQ(max_diff, 0.0) << c10::toString(dtype) << " " << NoiseKindName(kind);
      EXPECT_EQ(0, std::memcmp(back.data_ptr(), cpu.data_ptr(), n * cpu.element_size()));
    }
  }
}

}  // namespace
}  // namespace fedfm::zeroth_order
