// The SPSA / MeZO step, written once over an abstract parameter set so that
// the same algorithm runs on torch tensors (mezo.h: TorchParameters) and on
// host TensorMaps (TensorMapParameters below, used by tests and by anything
// that trains without LibTorch). Torch-free.
//
// One step with P = options.perturbations perturbations, each with its own
// seed s_p (z_p = z(s_p), regenerated, never stored):
//   for p < P:  theta += eps z_p;  L+ = loss();  theta -= 2 eps z_p;  L- = loss();
//               theta += eps z_p;  g_p = (L+ - L-) / (2 eps)
//   then        theta *= (1 - eta wd);  theta += (-eta g_p / P) z_p  for p < P
// i.e. theta -= eta ((1/P) sum_p g_p z_p + wd theta). All projected gradients
// are measured at the same theta. Memory beyond the loss evaluation: O(P)
// scalars. The three in-place perturbations restore theta only up to float
// rounding; docs/zeroth_order_noise.md bounds that drift.
#ifndef FEDFM_ZEROTH_ORDER_ZO_STEP_H_
#define FEDFM_ZEROTH_ORDER_ZO_STEP_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "protocols/config/options.h"
#include "protocols/tensor.h"
#include "zeroth_order/noise_stream.h"
#include "zeroth_order/seed_pool.h"

namespace fedfm::zeroth_order {

// A trainable set of tensors that can be changed in place by regenerated
// noise. Tensor i of the set uses noise stream (seed, i, kind).
class PerturbableParameters {
 public:
  virtual ~PerturbableParameters() = default;
  // theta_i = fl(theta_i + fl(alpha * z(seed, i, kind))) for every tensor i
  // (bf16: rounded back to bf16), per docs/zeroth_order_noise.md.
  virtual absl::Status AddScaledNoise(uint64_t seed, NoiseKind kind, float alpha) = 0;
  // theta = fl(theta * factor) for every tensor (weight decay).
  virtual absl::Status Scale(float factor) = 0;
};

// A TensorMap as PerturbableParameters (F32 and BF16 tensors; index = insertion
// position). Does not own the map, which must outlive this object.
class TensorMapParameters final : public PerturbableParameters {
 public:
  explicit TensorMapParameters(protocols::TensorMap* state, int num_threads = 1)
      : state_(state), num_threads_(num_threads) {}
  absl::Status AddScaledNoise(uint64_t seed, NoiseKind kind, float alpha) override;
  absl::Status Scale(float factor) override;

 private:
  protocols::TensorMap* state_;
  int num_threads_;
};

// Loss at the current parameters (forward passes only). Called 2P times per
// SPSA step; it must not change the parameters.
using LossFn = std::function<double()>;

struct Perturbation {
  uint64_t seed = 0;   // the noise seed of z_p
  int pool_slot = -1;  // slot of the round's seed pool, -1 without a pool
  // g_p: (L+ - L-) / (2 eps) for SPSA, the exact directional derivative
  // dL/dtheta . z_p for the forward-gradient estimator.
  double projected_gradient = 0;
};

struct ZoStepResult {
  double loss_plus = 0;   // mean over perturbations (SPSA), else the loss
  double loss_minus = 0;  // mean over perturbations (SPSA), else the loss
  std::vector<Perturbation> perturbations;
};

// Validated, parsed protocols::ZerothOrderOptions.
struct ZoSettings {
  float epsilon = 1e-3f;
  double learning_rate = 1e-4;
  int perturbations = 1;
  double weight_decay = 0.0;
  NoiseKind noise = NoiseKind::kGaussian;
  bool forward_estimator = false;  // estimator == "forward"
};
// InvalidArgument naming the key (zeroth_order.epsilon, ...) for values the
// config schema would reject. With `pool`, weight decay must be 0: a decay
// of theta cannot be expressed as seed scalars.
absl::StatusOr<ZoSettings> ParseZoOptions(const protocols::ZerothOrderOptions& options,
                                          bool with_seed_pool);

// The seeds of a step's perturbations: without a pool, s_p = DeriveSeed(step_seed,
// p, 0, kPurposePerturbation); with one, s_p = pool.seed(pool.Pick(step_seed, p)).
std::vector<Perturbation> PerturbationSeeds(uint64_t step_seed, int perturbations,
                                            const SeedPool* pool);

// One SPSA step (see the file comment). On error (parameter update failure,
// non-finite loss: FailedPrecondition) theta is restored to within the drift
// bound and left un-updated; if `loss` throws, theta is restored and the
// exception propagates. options.estimator must be "spsa".
absl::StatusOr<ZoStepResult> SpsaStep(PerturbableParameters& params, const LossFn& loss,
                                      uint64_t step_seed,
                                      const protocols::ZerothOrderOptions& options,
                                      const SeedPool* pool = nullptr);

// The update of a step given its measured projected gradients:
// theta *= (1 - eta wd) (skipped when wd = 0), then for p in order
// theta += fl32(-eta g_p / P) z_p.
absl::Status ApplyZoUpdate(PerturbableParameters& params, const std::vector<Perturbation>& ps,
                           const ZoSettings& settings);

// Adds every perturbation's g_p / P to its pool slot. FEDFM_CHECKs that the
// perturbations came from a pool of the accumulator's size.
void AccumulateSeedScalars(const ZoStepResult& step, SeedScalarAccumulator& acc);

}  // namespace fedfm::zeroth_order

#endif  // FEDFM_ZEROTH_ORDER_ZO_STEP_H_
