#include "zeroth_order/seed_pool.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "protocols/check.h"
#include "protocols/status_macros.h"
#include "zeroth_order/internal/noise_math.h"
#include "zeroth_order/internal/parallel.h"
#include "zeroth_order/noise.h"
#include "zeroth_order/philox.h"

namespace fedfm::zeroth_order {
namespace {

using protocols::DType;

// Elements per accumulation chunk of the replay.
constexpr size_t kChunk = 1024;

// acc[j] = sum_k scaled[k] * z_k[offset + j] (double, slot order), j < n.
void AccumulateChunk(const SeedPool& pool, std::span<const double> scaled, uint32_t tensor_index,
                     NoiseKind kind, uint64_t offset, size_t n, double* acc) {
  std::array<float, kChunk> z;
  std::fill(acc, acc + n, 0.0);
  for (int k = 0; k < pool.size(); ++k) {
    if (scaled[k] == 0.0) continue;  // unused slot: adds exactly nothing
    FillNoise({pool.seed(k), tensor_index, kind}, offset, std::span<float>(z.data(), n));
    const double c = scaled[k];
    for (size_t j = 0; j < n; ++j) acc[j] += c * static_cast<double>(z[j]);
  }
}

absl::Status CheckReplayInputs(const protocols::TensorMap& state, const SeedPool& pool,
                               std::span<const double> coefficients) {
  if (static_cast<int>(coefficients.size()) != pool.size()) {
    return absl::InvalidArgumentError(absl::StrCat("seed-pool replay: ", coefficients.size(),
                                                   " coefficients for a pool of ", pool.size()));
  }
  for (double c : coefficients) {
    if (!std::isfinite(c)) {
      return absl::InvalidArgumentError("seed-pool replay: non-finite coefficient");
    }
  }
  for (const auto& [name, tensor] : state) {
    if (tensor.dtype() != DType::kF32 && tensor.dtype() != DType::kBF16) {
      return absl::InvalidArgumentError(
          absl::StrCat("seed-pool replay: tensor \"", name, "\" has dtype ",
                       protocols::DTypeName(tensor.dtype()), "; only F32 and BF16 are trainable"));
    }
  }
  return absl::OkStatus();
}

std::vector<double> Scaled(std::span<const double> coefficients, double learning_rate) {
  std::vector<double> scaled(coefficients.size());
  for (size_t k = 0; k < scaled.size(); ++k) scaled[k] = -learning_rate * coefficients[k];
  return scaled;
}

// Calls apply(tensor_index, dtype, offset, acc, n) for every chunk of every
// tensor, chunks of one tensor possibly concurrently.
template <typename Apply>
void ForEachChunk(protocols::TensorMap& state, const SeedPool& pool,
                  std::span<const double> scaled, NoiseKind kind, int num_threads, Apply apply) {
  uint32_t index = 0;
  for (auto& [name, tensor] : state) {
    const uint32_t tensor_index = index++;
    const size_t numel = static_cast<size_t>(tensor.numel());
    internal::RunRanges(numel, num_threads, [&](size_t begin, size_t end) {
      std::array<double, kChunk> acc;
      for (size_t i = begin; i < end; i += kChunk) {
        const size_t n = std::min(kChunk, end - i);
        AccumulateChunk(pool, scaled, tensor_index, kind, i, n, acc.data());
        apply(tensor_index, tensor.dtype(), i, acc.data(), n);
      }
    });
  }
}

}  // namespace

SeedPool SeedPool::ForRound(uint64_t run_seed, uint64_t round, int size) {
  FEDFM_CHECK(size >= 1);
  std::vector<uint64_t> seeds(static_cast<size_t>(size));
  for (int k = 0; k < size; ++k) {
    seeds[k] = DeriveSeed(run_seed, round, static_cast<uint32_t>(k), kPurposeSeedPool);
  }
  return SeedPool(std::move(seeds));
}

SeedPool::SeedPool(std::vector<uint64_t> seeds) : seeds_(std::move(seeds)) {
  FEDFM_CHECK_MSG(!seeds_.empty(), "a seed pool needs at least one seed");
}

uint64_t SeedPool::seed(int slot) const {
  FEDFM_CHECK(slot >= 0 && slot < size());
  return seeds_[slot];
}

int SeedPool::Pick(uint64_t step_seed, uint32_t perturbation) const {
  const uint64_t x = DeriveSeed(step_seed, perturbation, 0, kPurposePoolPick) & 0xffffffffu;
  return static_cast<int>((x * static_cast<uint64_t>(seeds_.size())) >> 32);
}

SeedScalarAccumulator::SeedScalarAccumulator(int pool_size)
    : sums_(static_cast<size_t>(pool_size), 0.0) {
  FEDFM_CHECK(pool_size >= 1);
}

void SeedScalarAccumulator::Add(int slot, double value) {
  FEDFM_CHECK(slot >= 0 && slot < static_cast<int>(sums_.size()));
  sums_[slot] += value;
}

protocols::Update SeedScalarAccumulator::ToUpdate(std::string client_id,
                                                  uint64_t num_examples) const {
  protocols::Update update;
  update.client_id = std::move(client_id);
  update.num_examples = num_examples;
  update.kind = protocols::UpdateKind::kSeedScalars;
  update.seed_scalars.assign(sums_.begin(), sums_.end());
  return update;
}

absl::StatusOr<std::vector<double>> AverageSeedScalars(std::span<const protocols::Update> updates,
                                                       int pool_size) {
  if (updates.empty()) {
    return absl::FailedPreconditionError("seed-pool average: no updates");
  }
  std::vector<const protocols::Update*> ordered;
  std::set<std::string> ids;
  for (const protocols::Update& u : updates) {
    const std::string who = absl::StrCat("seed-pool update of client \"", u.client_id, "\": ");
    if (u.kind != protocols::UpdateKind::kSeedScalars) {
      return absl::InvalidArgumentError(who + "not a seed-scalar update");
    }
    if (static_cast<int>(u.seed_scalars.size()) != pool_size) {
      return absl::InvalidArgumentError(absl::StrCat(who, u.seed_scalars.size(),
                                                     " scalars for a pool of ", pool_size));
    }
    if (u.num_examples == 0) return absl::InvalidArgumentError(who + "zero examples");
    for (float s : u.seed_scalars) {
      if (!std::isfinite(s)) return absl::InvalidArgumentError(who + "non-finite scalar");
    }
    if (!ids.insert(u.client_id).second) {
      return absl::InvalidArgumentError(who + "duplicate client id");
    }
    ordered.push_back(&u);
  }
  std::sort(ordered.begin(), ordered.end(),
            [](const protocols::Update* a, const protocols::Update* b) {
              return a->client_id < b->client_id;
            });
  double total = 0;
  std::vector<double> mean(static_cast<size_t>(pool_size), 0.0);
  for (const protocols::Update* u : ordered) {
    const double w = static_cast<double>(u->num_examples);
    total += w;
    for (int k = 0; k < pool_size; ++k) mean[k] += w * static_cast<double>(u->seed_scalars[k]);
  }
  for (double& m : mean) m /= total;
  return mean;
}

absl::StatusOr<protocols::TensorMap> SeedPoolDelta(const protocols::TensorMap& global,
                                                   const SeedPool& pool,
                                                   std::span<const double> coefficients,
                                                   double learning_rate, NoiseKind kind,
                                                   int num_threads) {
  FEDFM_RETURN_IF_ERROR(CheckReplayInputs(global, pool, coefficients));
  protocols::TensorMap delta;
  for (const auto& [name, tensor] : global) {
    FEDFM_CHECK(delta.Insert(name, protocols::Tensor::Zeros(DType::kF32, tensor.shape())).ok());
  }
  const std::vector<double> scaled = Scaled(coefficients, learning_rate);
  // mutable_floats() once per tensor, before the threads share it.
  std::vector<float*> out;
  for (auto& [name, tensor] : delta) out.push_back(tensor.mutable_floats().data());
  ForEachChunk(delta, pool, scaled, kind, num_threads,
               [&](uint32_t index, DType, size_t offset, const double* acc, size_t n) {
                 float* d = out[index] + offset;
                 for (size_t j = 0; j < n; ++j) d[j] = static_cast<float>(acc[j]);
               });
  return delta;
}

absl::Status ApplySeedPoolUpdate(protocols::TensorMap& state, const SeedPool& pool,
                                 std::span<const double> coefficients, double learning_rate,
                                 NoiseKind kind, int num_threads) {
  FEDFM_RETURN_IF_ERROR(CheckReplayInputs(state, pool, coefficients));
  const std::vector<double> scaled = Scaled(coefficients, learning_rate);
  std::vector<std::byte*> data;
  for (auto& [name, tensor] : state) data.push_back(tensor.mutable_bytes().data());
  ForEachChunk(state, pool, scaled, kind, num_threads,
               [&](uint32_t index, DType dtype, size_t offset, const double* acc, size_t n) {
                 std::byte* base = data[index];
                 if (dtype == DType::kF32) {
                   float* d = reinterpret_cast<float*>(base) + offset;
                   for (size_t j = 0; j < n; ++j) d[j] = d[j] + static_cast<float>(acc[j]);
                 } else {
                   uint16_t* d = reinterpret_cast<uint16_t*>(base) + offset;
                   for (size_t j = 0; j < n; ++j) {
                     d[j] = internal::FloatToBf16Bits(internal::Bf16BitsToFloat(d[j]) +
                                                      static_cast<float>(acc[j]));
                   }
                 }
               });
  return absl::OkStatus();
}

}  // namespace fedfm::zeroth_order
