// Fused CUDA operations of the model as autograd functions (kernels in
// model/*_kernels.cu). Each returns an undefined tensor when it does not
// apply: fedfm built without FEDFM_CUDA, CPU tensors, a dtype other than
// float32/bf16/fp16, or inputs carrying forward-mode tangents; the caller
// then takes the ATen expression.
#ifndef FEDFM_MODEL_INTERNAL_FUSED_OPS_H_
#define FEDFM_MODEL_INTERNAL_FUSED_OPS_H_

#include <torch/torch.h>

namespace fedfm::model::internal {

// Mean cross-entropy of logits [n, v] against labels [n] (int64) over rows
// whose label is not ignore_index (NaN when every row is ignored, as torch;
// a label outside [0, v) gives NaN). The logits stay in their dtype: no
// float32 copy, no float32 log-softmax kept for backward; sums in float.
// Equal to cross_entropy(logits.float(), labels) up to float rounding.
torch::Tensor FusedCrossEntropyMean(const torch::Tensor& logits, const torch::Tensor& labels,
                                    int64_t ignore_index);

// RMSNorm of x [..., D] with weight w [D] of x's dtype: RmsNormReference's
// rounding steps in one pass per row; gradients to x and, when it requires
// them, w.
torch::Tensor FusedRmsNorm(const torch::Tensor& x, const torch::Tensor& w, double eps);

}  // namespace fedfm::model::internal

#endif  // FEDFM_MODEL_INTERNAL_FUSED_OPS_H_
