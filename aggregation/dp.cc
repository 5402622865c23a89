#include "aggregation/dp.h"

#include <cmath>
#include <numbers>

#include "absl/strings/str_cat.h"

namespace fedfm::aggregation {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in (0, 1]: 53 random bits, never 0 (log(0) is avoided).
double Uniform(uint64_t bits) { return static_cast<double>((bits >> 11) + 1) * 0x1.0p-53; }

}  // namespace

double GaussianStream::At(uint64_t index) const {
  const uint64_t key = SplitMix64(seed_ ^ 0x6A09E667F3BCC909ull);
  const uint64_t a = SplitMix64(key ^ SplitMix64(2 * index));
  const uint64_t b = SplitMix64(key ^ SplitMix64(2 * index + 1));
  const double r = std::sqrt(-2.0 * std::log(Uniform(a)));
  return r * std::cos(2.0 * std::numbers::pi * Uniform(b));
}

double UpdateL2Norm(const protocols::Update& update) {
  double sum = 0.0;
  if (update.kind == protocols::UpdateKind::kSeedScalars) {
    for (float s : update.seed_scalars) sum += static_cast<double>(s) * s;
  } else {
    for (const auto& [name, t] : update.delta) {
      for (float x : t.floats()) sum += static_cast<double>(x) * x;
    }
  }
  return std::sqrt(sum);
}

double ClipUpdate(protocols::Update& update, double clip_norm) {
  const double norm = UpdateL2Norm(update);
  if (norm <= clip_norm) return norm;
  const double factor = clip_norm / norm;
  if (update.kind == protocols::UpdateKind::kSeedScalars) {
    for (float& s : update.seed_scalars) s = static_cast<float>(s * factor);
  } else {
    for (auto& [name, t] : update.delta) {
      for (float& x : t.mutable_floats()) x = static_cast<float>(x * factor);
    }
  }
  return norm;
}

absl::StatusOr<double> ClipAndAddDistributedNoise(protocols::Update& update, const protocols::DpOptions& dp,
                                                  int num_clients, uint64_t seed) {
  if (!(dp.clip_norm > 0) || !(dp.noise_multiplier >= 0) || num_clients < 1) {
    return absl::InvalidArgumentError(absl::StrCat("distributed DP needs dp.clip_norm > 0 (got ", dp.clip_norm,
                                                   "), dp.noise_multiplier >= 0 (got ", dp.noise_multiplier,
                                                   ") and num_clients >= 1 (got ", num_clients, ")"));
  }
  if (update.kind == protocols::UpdateKind::kDense) {
    for (const auto& [name, t] : update.delta) {
      const protocols::TensorCoverage* c = update.coverage.Find(name);
      if (c == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("update from client \"", update.client_id, "\": tensor \"",
                                                       name, "\" has no coverage entry"));
      }
      if (c->rank_dim >= 0 && (c->rank_dim >= static_cast<int>(t.shape().size()) || c->rank < 1 ||
                               c->rank > t.shape()[c->rank_dim])) {
        return absl::InvalidArgumentError(absl::StrCat("update from client \"", update.client_id, "\": tensor \"",
                                                       name, "\": coverage rank ", c->rank, " along dim ", c->rank_dim,
                                                       " is outside shape ", protocols::ShapeString(t.shape())));
      }
    }
  }
  const double norm = ClipUpdate(update, dp.clip_norm);
  const double stddev = dp.noise_multiplier * dp.clip_norm / std::sqrt(static_cast<double>(num_clients));
  GaussianStream noise(seed);
  uint64_t index = 0;
  if (update.kind == protocols::UpdateKind::kSeedScalars) {
    for (float& s : update.seed_scalars) s = static_cast<float>(s + stddev * noise.At(index++));
  } else {
    for (auto& [name, t] : update.delta) {
      const protocols::TensorCoverage& c = *update.coverage.Find(name);
      std::span<float> v = t.mutable_floats();
      protocols::ForEachCovered(t, c, [&](int64_t i) { v[i] = static_cast<float>(v[i] + stddev * noise.At(index++)); });
    }
  }
  return norm;
}

}  // namespace fedfm::aggregation
