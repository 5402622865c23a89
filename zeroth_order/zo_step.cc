#include "zeroth_order/zo_step.h"

#include <cmath>
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

// Restores theta if a loss evaluation throws while a perturbation of
// `applied` (a multiple of eps, in units of z) is in place.
class PerturbationGuard {
 public:
  PerturbationGuard(PerturbableParameters& params, uint64_t seed, NoiseKind kind)
      : params_(params), seed_(seed), kind_(kind) {}
  ~PerturbationGuard() {
    if (applied_ != 0.0f) (void)params_.AddScaledNoise(seed_, kind_, -applied_);
  }
  absl::Status Move(float alpha) {
    FEDFM_RETURN_IF_ERROR(params_.AddScaledNoise(seed_, kind_, alpha));
    applied_ += alpha;  // exact: eps, -eps, 0 are the only values it takes
    return absl::OkStatus();
  }

 private:
  PerturbableParameters& params_;
  uint64_t seed_;
  NoiseKind kind_;
  float applied_ = 0.0f;
};

absl::Status CheckFinite(double loss, const char* where) {
  if (std::isfinite(loss)) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("zeroth-order step: loss is ", loss, " at ", where,
                   "; parameters restored, step skipped (lower zeroth_order.learning_rate or "
                   "zeroth_order.epsilon?)"));
}

}  // namespace

absl::Status TensorMapParameters::AddScaledNoise(uint64_t seed, NoiseKind kind, float alpha) {
  return zeroth_order::AddScaledNoise(*state_, seed, kind, alpha, num_threads_);
}

absl::Status TensorMapParameters::Scale(float factor) {
  for (auto& [name, tensor] : *state_) {
    if (tensor.dtype() == protocols::DType::kF32) {
      for (float& v : tensor.mutable_floats()) v = v * factor;
    } else if (tensor.dtype() == protocols::DType::kBF16) {
      std::span<std::byte> bytes = tensor.mutable_bytes();
      uint16_t* d = reinterpret_cast<uint16_t*>(bytes.data());
      for (int64_t i = 0; i < tensor.numel(); ++i) {
        d[i] = internal::FloatToBf16Bits(internal::Bf16BitsToFloat(d[i]) * factor);
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat("zeroth-order scale: tensor \"", name,
                                                     "\" is not F32 or BF16"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ZoSettings> ParseZoOptions(const protocols::ZerothOrderOptions& options,
                                          bool with_seed_pool) {
  ZoSettings s;
  if (!(options.epsilon > 0) || !std::isfinite(options.epsilon)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config key \"zeroth_order.epsilon\": must be > 0, got ", options.epsilon));
  }
  if (!(options.learning_rate > 0) || !std::isfinite(options.learning_rate)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config key \"zeroth_order.learning_rate\": must be > 0, got ", options.learning_rate));
  }
  if (options.perturbations < 1 || options.perturbations > 1024) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config key \"zeroth_order.perturbations\": must be 1..1024, got ", options.perturbations));
  }
  if (!(options.weight_decay >= 0) || !std::isfinite(options.weight_decay)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config key \"zeroth_order.weight_decay\": must be >= 0, got ", options.weight_decay));
  }
  if (with_seed_pool && options.weight_decay != 0) {
    return absl::InvalidArgumentError(
        "config key \"zeroth_order.weight_decay\": must be 0 with a seed pool "
        "(zeroth_order.seed_pool > 0): decay cannot be sent as seed scalars");
  }
  if (options.estimator != "spsa" && options.estimator != "forward") {
    return absl::InvalidArgumentError(absl::StrCat(
        "config key \"zeroth_order.estimator\": must be \"spsa\" or \"forward\", got \"",
        options.estimator, "\""));
  }
  FEDFM_ASSIGN_OR_RETURN(s.noise, ParseNoiseKind(options.noise));
  s.epsilon = static_cast<float>(options.epsilon);
  if (!(s.epsilon > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config key \"zeroth_order.epsilon\": ", options.epsilon, " underflows float32"));
  }
  s.learning_rate = options.learning_rate;
  s.perturbations = options.perturbations;
  s.weight_decay = options.weight_decay;
  s.forward_estimator = options.estimator == "forward";
  return s;
}

std::vector<Perturbation> PerturbationSeeds(uint64_t step_seed, int perturbations,
                                            const SeedPool* pool) {
  std::vector<Perturbation> ps(static_cast<size_t>(perturbations));
  for (int p = 0; p < perturbations; ++p) {
    if (pool == nullptr) {
      ps[p].seed = DeriveSeed(step_seed, static_cast<uint64_t>(p), 0, kPurposePerturbation);
    } else {
      ps[p].pool_slot = pool->Pick(step_seed, static_cast<uint32_t>(p));
      ps[p].seed = pool->seed(ps[p].pool_slot);
    }
  }
  return ps;
}

absl::StatusOr<ZoStepResult> SpsaStep(PerturbableParameters& params, const LossFn& loss,
                                      uint64_t step_seed,
                                      const protocols::ZerothOrderOptions& options,
                                      const SeedPool* pool) {
  FEDFM_ASSIGN_OR_RETURN(ZoSettings s, ParseZoOptions(options, pool != nullptr));
  if (s.forward_estimator) {
    return absl::InvalidArgumentError(
        "zeroth-order step: estimator \"forward\" needs dual tensors (mezo.h ForwardGradientStep)");
  }
  ZoStepResult result;
  result.perturbations = PerturbationSeeds(step_seed, s.perturbations, pool);
  const float eps = s.epsilon;
  // In float: fl(2 * eps) is exact, so -2 eps z rounds like 2 * fl(eps z).
  for (Perturbation& p : result.perturbations) {
    PerturbationGuard guard(params, p.seed, s.noise);
    FEDFM_RETURN_IF_ERROR(guard.Move(eps));
    const double plus = loss();
    FEDFM_RETURN_IF_ERROR(guard.Move(-2.0f * eps));
    const double minus = loss();
    FEDFM_RETURN_IF_ERROR(guard.Move(eps));
    FEDFM_RETURN_IF_ERROR(CheckFinite(plus, "theta + eps z"));
    FEDFM_RETURN_IF_ERROR(CheckFinite(minus, "theta - eps z"));
    p.projected_gradient = (plus - minus) / (2.0 * static_cast<double>(eps));
    result.loss_plus += plus;
    result.loss_minus += minus;
  }
  result.loss_plus /= s.perturbations;
  result.loss_minus /= s.perturbations;
  FEDFM_RETURN_IF_ERROR(ApplyZoUpdate(params, result.perturbations, s));
  return result;
}

absl::Status ApplyZoUpdate(PerturbableParameters& params, const std::vector<Perturbation>& ps,
                           const ZoSettings& settings) {
  if (settings.weight_decay != 0) {
    FEDFM_RETURN_IF_ERROR(
        params.Scale(static_cast<float>(1.0 - settings.learning_rate * settings.weight_decay)));
  }
  const double n = static_cast<double>(ps.size());
  for (const Perturbation& p : ps) {
    const float alpha = static_cast<float>(-settings.learning_rate * p.projected_gradient / n);
    if (alpha == 0.0f) continue;
    FEDFM_RETURN_IF_ERROR(params.AddScaledNoise(p.seed, settings.noise, alpha));
  }
  return absl::OkStatus();
}

void AccumulateSeedScalars(const ZoStepResult& step, SeedScalarAccumulator& acc) {
  const double n = static_cast<double>(step.perturbations.size());
  for (const Perturbation& p : step.perturbations) {
    FEDFM_CHECK_MSG(p.pool_slot >= 0, "perturbation did not come from a seed pool");
    acc.Add(p.pool_slot, p.projected_gradient / n);
  }
}

}  // namespace fedfm::zeroth_order
