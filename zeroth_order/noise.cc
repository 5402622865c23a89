#include "zeroth_order/noise.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "protocols/check.h"
#include "zeroth_order/internal/noise_math.h"
#include "zeroth_order/internal/parallel.h"

namespace fedfm::zeroth_order {
namespace {

using internal::GaussianBlock;
using internal::kGaussianPerBlock;
using internal::kRademacherPerBlock;
using internal::RunRanges;

// Elements generated per stack buffer by the update functions.
constexpr size_t kChunk = 1024;

void FillGaussian(const NoiseStream& s, uint64_t offset, float* out, size_t n) {
  size_t i = 0;
  // Leading partial block.
  if (const uint64_t lane = offset % kGaussianPerBlock; lane != 0 && n > 0) {
    float z[4];
    GaussianBlock(s, offset / kGaussianPerBlock, z);
    const size_t take = std::min<size_t>(kGaussianPerBlock - lane, n);
    std::memcpy(out, z + lane, take * sizeof(float));
    i = take;
  }
  // Whole blocks, straight into the output.
  uint64_t block = (offset + i) / kGaussianPerBlock;
  for (; i + kGaussianPerBlock <= n; i += kGaussianPerBlock, ++block) {
    GaussianBlock(s, block, out + i);
  }
  // Trailing partial block.
  if (i < n) {
    float z[4];
    GaussianBlock(s, block, z);
    std::memcpy(out + i, z, (n - i) * sizeof(float));
  }
}

void FillRademacher(const NoiseStream& s, uint64_t offset, float* out, size_t n) {
  size_t i = 0;
  while (i < n) {
    const uint64_t e = offset + i;
    const uint64_t block = e / kRademacherPerBlock;
    const uint32_t first = static_cast<uint32_t>(e % kRademacherPerBlock);
    const size_t take = std::min<size_t>(kRademacherPerBlock - first, n - i);
    const Philox4x32Counter x = internal::NoiseBlockBits(s, block);
    for (size_t j = 0; j < take; ++j) {
      out[i + j] = internal::RademacherFromBits(x, first + static_cast<uint32_t>(j));
    }
    i += take;
  }
}

}  // namespace

absl::StatusOr<NoiseKind> ParseNoiseKind(const std::string& name) {
  if (name == "gaussian") return NoiseKind::kGaussian;
  if (name == "rademacher") return NoiseKind::kRademacher;
  return absl::InvalidArgumentError(
      absl::StrCat("zeroth-order noise \"", name, "\": must be \"gaussian\" or \"rademacher\""));
}

const char* NoiseKindName(NoiseKind kind) {
  switch (kind) {
    case NoiseKind::kGaussian: return "gaussian";
    case NoiseKind::kRademacher: return "rademacher";
  }
  return "unknown";
}

float NoiseAt(const NoiseStream& stream, uint64_t index) {
  float z;
  FillNoise(stream, index, std::span<float>(&z, 1));
  return z;
}

void FillNoise(const NoiseStream& stream, uint64_t offset, std::span<float> out) {
  switch (stream.kind) {
    case NoiseKind::kGaussian:
      FillGaussian(stream, offset, out.data(), out.size());
      return;
    case NoiseKind::kRademacher:
      FillRademacher(stream, offset, out.data(), out.size());
      return;
  }
  FEDFM_CHECK_MSG(false, "unknown NoiseKind");
}

void AddScaledNoise(const NoiseStream& stream, uint64_t offset, float alpha,
                    std::span<float> data) {
  std::array<float, kChunk> z;
  for (size_t i = 0; i < data.size(); i += kChunk) {
    const size_t n = std::min(kChunk, data.size() - i);
    FillNoise(stream, offset + i, std::span<float>(z.data(), n));
    float* d = data.data() + i;
    for (size_t j = 0; j < n; ++j) d[j] = internal::AxpyElement(d[j], alpha, z[j]);
  }
}

void AddScaledNoiseBf16(const NoiseStream& stream, uint64_t offset, float alpha,
                        std::span<uint16_t> data) {
  std::array<float, kChunk> z;
  for (size_t i = 0; i < data.size(); i += kChunk) {
    const size_t n = std::min(kChunk, data.size() - i);
    FillNoise(stream, offset + i, std::span<float>(z.data(), n));
    uint16_t* d = data.data() + i;
    for (size_t j = 0; j < n; ++j) {
      d[j] = internal::FloatToBf16Bits(
          internal::AxpyElement(internal::Bf16BitsToFloat(d[j]), alpha, z[j]));
    }
  }
}

void ParallelFillNoise(const NoiseStream& stream, uint64_t offset, std::span<float> out,
                       int num_threads) {
  RunRanges(out.size(), num_threads, [&](size_t begin, size_t end) {
    FillNoise(stream, offset + begin, out.subspan(begin, end - begin));
  });
}

void ParallelAddScaledNoise(const NoiseStream& stream, uint64_t offset, float alpha,
                            std::span<float> data, int num_threads) {
  RunRanges(data.size(), num_threads, [&](size_t begin, size_t end) {
    AddScaledNoise(stream, offset + begin, alpha, data.subspan(begin, end - begin));
  });
}

void ParallelAddScaledNoiseBf16(const NoiseStream& stream, uint64_t offset, float alpha,
                                std::span<uint16_t> data, int num_threads) {
  RunRanges(data.size(), num_threads, [&](size_t begin, size_t end) {
    AddScaledNoiseBf16(stream, offset + begin, alpha, data.subspan(begin, end - begin));
  });
}

absl::Status AddScaledNoise(protocols::TensorMap& state, uint64_t seed, NoiseKind kind,
                            float alpha, int num_threads) {
  for (const auto& [name, tensor] : state) {
    if (tensor.dtype() != protocols::DType::kF32 && tensor.dtype() != protocols::DType::kBF16) {
      return absl::InvalidArgumentError(
          absl::StrCat("zeroth-order noise: tensor \"", name, "\" has dtype ",
                       protocols::DTypeName(tensor.dtype()), "; only F32 and BF16 are trainable"));
    }
  }
  uint32_t index = 0;
  for (auto& [name, tensor] : state) {
    const NoiseStream stream{seed, index++, kind};
    if (tensor.dtype() == protocols::DType::kF32) {
      ParallelAddScaledNoise(stream, 0, alpha, tensor.mutable_floats(), num_threads);
    } else {
      std::span<std::byte> bytes = tensor.mutable_bytes();
      std::span<uint16_t> bits(reinterpret_cast<uint16_t*>(bytes.data()),
                               static_cast<size_t>(tensor.numel()));
      ParallelAddScaledNoiseBf16(stream, 0, alpha, bits, num_threads);
    }
  }
  return absl::OkStatus();
}

}  // namespace fedfm::zeroth_order
