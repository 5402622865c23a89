// In-place zeroth-order steps over any trainable set of torch tensors: MeZO
// (SPSA with noise regenerated from seeds) and a forward-gradient variant
// (FwdLLM-style, forward-mode AD along the same directions). The model is
// only reached through a caller-supplied loss closure, so this works for any
// model; the trainer that binds it to model/ lives above this layer.
//
// Memory: MezoStep needs inference memory plus O(1) — it never clones theta
// and never stores z (the noise is regenerated inside the update kernels).
// ForwardGradientStep stores one tangent per trainable tensor (the size of
// the trainable set) plus the tangents of the activations.
//
// Tensor i of `params` uses noise stream (seed, i, kind): pass the trainable
// tensors in the order of the global trainable TensorMap, so that the
// coordinator's seed-pool replay (seed_pool.h) touches the same elements.
// Not thread-safe: one step at a time per parameter set.
#ifndef FEDFM_ZEROTH_ORDER_MEZO_H_
#define FEDFM_ZEROTH_ORDER_MEZO_H_

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "protocols/config/options.h"
#include "zeroth_order/noise_torch.h"
#include "zeroth_order/seed_pool.h"
#include "zeroth_order/zo_step.h"

namespace fedfm::zeroth_order {

// Torch tensors (CPU or CUDA, float32 or bfloat16, contiguous) as
// PerturbableParameters. Holds references to the tensors' storage: changes
// land in the caller's tensors (e.g. a module's parameters).
class TorchParameters final : public PerturbableParameters {
 public:
  // InvalidArgument naming the index of an undefined, non-contiguous or
  // non-float32/bfloat16 tensor.
  static absl::StatusOr<TorchParameters> Create(std::vector<torch::Tensor> tensors);

  absl::Status AddScaledNoise(uint64_t seed, NoiseKind kind, float alpha) override;
  absl::Status Scale(float factor) override;
  const std::vector<torch::Tensor>& tensors() const { return tensors_; }

 private:
  explicit TorchParameters(std::vector<torch::Tensor> tensors);
  std::vector<torch::Tensor> tensors_;
  std::vector<NoiseSpan> spans_;  // tensor i is noise tensor index i, offset 0
};

// One MeZO step (zo_step.h SpsaStep) on `params`, with `loss` evaluated under
// torch::NoGradGuard. options.estimator must be "spsa". Exceptions from the
// loss (c10::Error) are caught here, after theta is restored, and returned
// as Internal; a non-finite loss is FailedPrecondition, theta restored.
absl::StatusOr<ZoStepResult> MezoStep(const std::vector<torch::Tensor>& params,
                                      const LossFn& loss, uint64_t step_seed,
                                      const protocols::ZerothOrderOptions& options,
                                      const SeedPool* pool = nullptr);

// Loss as a 0-dim tensor, so that forward-mode AD can carry its tangent.
using TensorLossFn = std::function<torch::Tensor()>;

// One forward-gradient step: for each perturbation p, tangents z_p (the same
// noise streams as MezoStep; cast to each tensor's dtype) are attached to the
// parameters at a fresh forward-AD level and one forward pass gives the exact
// directional derivative g_p = dL/dtheta . z_p (no epsilon, no finite
// difference); the update is MezoStep's (ApplyZoUpdate), and the result and
// seed-pool scalars have the same format. Uses LibTorch's forward AD
// (torch::autograd::ForwardADLevel, Tensor::_set_fw_grad), available in the
// C++ API of 1.13 and 2.x; every op of the loss needs a forward-AD formula.
// Fails (Internal) inside another forward-AD level. options.epsilon is unused.
absl::StatusOr<ZoStepResult> ForwardGradientStep(const std::vector<torch::Tensor>& params,
                                                 const TensorLossFn& loss, uint64_t step_seed,
                                                 const protocols::ZerothOrderOptions& options,
                                                 const SeedPool* pool = nullptr);

}  // namespace fedfm::zeroth_order

#endif  // FEDFM_ZEROTH_ORDER_MEZO_H_
