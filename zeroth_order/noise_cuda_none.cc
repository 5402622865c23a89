// Built when FEDFM_CUDA is OFF: CUDA tensors cannot be perturbed.
#include "zeroth_order/internal/noise_cuda_dispatch.h"

namespace fedfm::zeroth_order::internal {
namespace {
absl::Status NotBuilt() {
  return absl::FailedPreconditionError(
      "zeroth-order noise on a CUDA tensor: fedfm was built without FEDFM_CUDA");
}
}  // namespace

bool CudaNoiseCompiledIn() { return false; }
absl::Status CudaAddScaledNoise(const torch::Tensor&, const NoiseStream&, float, uint64_t) {
  return NotBuilt();
}
absl::Status CudaAddScaledNoiseSpans(std::span<const NoiseSpan>, uint64_t, NoiseKind, float) { return NotBuilt(); }
absl::Status CudaFillNoise(const torch::Tensor&, const NoiseStream&, uint64_t) {
  return NotBuilt();
}

}  // namespace fedfm::zeroth_order::internal
