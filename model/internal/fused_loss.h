// Mean cross-entropy of CUDA logits by the fused kernels of
// model/cross_entropy_kernels.cu, as an autograd function: the logits stay in
// their dtype (no float32 copy, no float32 log-softmax is kept for backward),
// sums are in float. Used by model::CausalLmLoss; equal to
// cross_entropy(logits.float(), labels, ignore_index) up to float rounding.
#ifndef FEDFM_MODEL_INTERNAL_FUSED_LOSS_H_
#define FEDFM_MODEL_INTERNAL_FUSED_LOSS_H_

#include <torch/torch.h>

namespace fedfm::model::internal {

// logits: [n, v] CUDA float32/bf16/fp16; labels: [n] int64 on the same device.
// Returns the mean over rows whose label is not ignore_index (NaN when every
// row is ignored, as torch), or an undefined tensor when the fused path does
// not apply: fedfm built without FEDFM_CUDA, a CPU tensor, another dtype, or
// logits carrying a forward-mode tangent. A label outside [0, v) gives NaN.
torch::Tensor FusedCrossEntropyMean(const torch::Tensor& logits, const torch::Tensor& labels,
                                    int64_t ignore_index);

}  // namespace fedfm::model::internal

#endif  // FEDFM_MODEL_INTERNAL_FUSED_LOSS_H_
