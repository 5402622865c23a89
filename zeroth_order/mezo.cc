#include "zeroth_order/mezo.h"

#include <torch/csrc/autograd/forward_grad.h>

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "protocols/status_macros.h"
#include "zeroth_order/noise_torch.h"

namespace fedfm::zeroth_order {
namespace {

// Releases a forward-AD level (and with it every tangent set at that level),
// also when the loss throws.
class DualLevel {
 public:
  DualLevel() : index_(torch::autograd::ForwardADLevel::get_next_idx()) {}
  ~DualLevel() { torch::autograd::ForwardADLevel::release_idx(index_); }
  DualLevel(const DualLevel&) = delete;
  DualLevel& operator=(const DualLevel&) = delete;
  uint64_t index() const { return index_; }

 private:
  uint64_t index_;
};

absl::Status LossThrew(const char* what, const std::exception& e) {
  return absl::InternalError(absl::StrCat("zeroth-order ", what, ": loss threw: ", e.what()));
}

}  // namespace

absl::StatusOr<TorchParameters> TorchParameters::Create(std::vector<torch::Tensor> tensors) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    const torch::Tensor& t = tensors[i];
    const std::string which = absl::StrCat("zeroth-order parameters: tensor ", i);
    if (!t.defined()) return absl::InvalidArgumentError(which + " is undefined");
    if (t.scalar_type() != torch::kFloat32 && t.scalar_type() != torch::kBFloat16) {
      return absl::InvalidArgumentError(
          absl::StrCat(which, " has dtype ", std::string(c10::toString(t.scalar_type())),
                       "; only float32 and bfloat16 are trainable"));
    }
    if (!t.is_contiguous()) return absl::InvalidArgumentError(which + " is not contiguous");
  }
  return TorchParameters(std::move(tensors));
}

TorchParameters::TorchParameters(std::vector<torch::Tensor> tensors) : tensors_(std::move(tensors)) {
  for (size_t i = 0; i < tensors_.size(); ++i) spans_.push_back({tensors_[i], static_cast<uint32_t>(i), 0});
}

absl::Status TorchParameters::AddScaledNoise(uint64_t seed, NoiseKind kind, float alpha) {
  return AddScaledNoiseSpans(spans_, seed, kind, alpha);
}

absl::Status TorchParameters::Scale(float factor) {
  torch::NoGradGuard no_grad;
  for (torch::Tensor& t : tensors_) t.mul_(static_cast<double>(factor));
  return absl::OkStatus();
}

absl::StatusOr<ZoStepResult> MezoStep(const std::vector<torch::Tensor>& params,
                                      const LossFn& loss, uint64_t step_seed,
                                      const protocols::ZerothOrderOptions& options,
                                      const SeedPool* pool) {
  FEDFM_ASSIGN_OR_RETURN(TorchParameters tp, TorchParameters::Create(params));
  torch::NoGradGuard no_grad;
  try {
    return SpsaStep(tp, loss, step_seed, options, pool);
  } catch (const std::exception& e) {
    return LossThrew("MeZO step", e);
  }
}

absl::StatusOr<ZoStepResult> ForwardGradientStep(const std::vector<torch::Tensor>& params,
                                                 const TensorLossFn& loss, uint64_t step_seed,
                                                 const protocols::ZerothOrderOptions& options,
                                                 const SeedPool* pool) {
  FEDFM_ASSIGN_OR_RETURN(ZoSettings settings, ParseZoOptions(options, pool != nullptr));
  FEDFM_ASSIGN_OR_RETURN(TorchParameters tp, TorchParameters::Create(params));
  ZoStepResult result;
  result.perturbations = PerturbationSeeds(step_seed, settings.perturbations, pool);
  // Forward AD is not disabled by NoGradGuard; the guard keeps autograd from
  // recording a backward graph.
  torch::NoGradGuard no_grad;
  try {
    for (Perturbation& p : result.perturbations) {
      const DualLevel level;
      for (size_t i = 0; i < params.size(); ++i) {
        FEDFM_ASSIGN_OR_RETURN(
            torch::Tensor z,
            NoiseTensor({p.seed, static_cast<uint32_t>(i), settings.noise}, params[i].sizes(),
                        params[i].device()));
        params[i]._set_fw_grad(z.to(params[i].scalar_type()), level.index(),
                               /*is_inplace_op=*/false);
      }
      const torch::Tensor value = loss();
      if (!value.defined() || value.numel() != 1) {
        return absl::InvalidArgumentError(
            "zeroth-order forward gradient: the loss must be a one-element tensor");
      }
      const double l = value.item<double>();
      const torch::Tensor& tangent = value._fw_grad(level.index());
      p.projected_gradient = tangent.defined() ? tangent.item<double>() : 0.0;
      if (!std::isfinite(l) || !std::isfinite(p.projected_gradient)) {
        return absl::FailedPreconditionError(
            absl::StrCat("zeroth-order forward gradient: loss ", l, ", directional derivative ",
                         p.projected_gradient, " (not finite); step skipped"));
      }
      result.loss_plus += l;
    }
  } catch (const std::exception& e) {
    return LossThrew("forward-gradient step", e);
  }
  result.loss_plus /= settings.perturbations;
  result.loss_minus = result.loss_plus;
  FEDFM_RETURN_IF_ERROR(ApplyZoUpdate(tp, result.perturbations, settings));
  return result;
}

}  // namespace fedfm::zeroth_order
