// RMSNorm, y = x / sqrt(mean(x^2) + eps) * w over the last dim, as one fused
// CPU kernel for float32 (forward and backward in one pass over each row,
// parallel over rows) where the plain expression takes about a dozen ATen
// ops. Equal to RmsNormReference up to float rounding; gradients flow to x
// and, when it requires them, w. CUDA tensors have fused kernels of their own
// (model/internal/fused_ops.h, with FEDFM_CUDA); Model picks the path.
//
// Shapes: x: [..., D]   w: [D]   ->   [..., D]
#ifndef FEDFM_MODEL_RMS_NORM_H_
#define FEDFM_MODEL_RMS_NORM_H_

#include <torch/torch.h>

namespace fedfm::model {

// True when RmsNormCpu takes these inputs: float32 CPU tensors, no
// forward-mode AD tangents.
bool CpuRmsNormSupports(const torch::Tensor& x, const torch::Tensor& w);
// Throws c10::Error unless CpuRmsNormSupports(x, w) and w is [D].
torch::Tensor RmsNormCpu(const torch::Tensor& x, const torch::Tensor& w, double eps);
// x * rsqrt(mean(x^2, -1) + eps) * w in ATen ops, float32 statistics.
torch::Tensor RmsNormReference(const torch::Tensor& x, const torch::Tensor& w, double eps);

}  // namespace fedfm::model

#endif  // FEDFM_MODEL_RMS_NORM_H_
