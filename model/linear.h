// y = x W^T + b, the projections of the transformer. Float32 CPU tensors
// take GEMMs of our own choosing (model/internal/cpu_gemm.h) in forward and
// backward when the process has them; everything else (other dtypes and
// devices, inputs carrying forward-mode AD tangents, a process without
// oneDNN's sgemm) is torch::linear. Results equal torch::linear's up to float
// rounding; gradients flow to x, W and b as each requires.
//
// Shapes: N = leading dims (any number), in, out.
//   x: [..., in]   w: [out, in]   b: [out] or undefined   ->   [..., out]
#ifndef FEDFM_MODEL_LINEAR_H_
#define FEDFM_MODEL_LINEAR_H_

#include <torch/torch.h>

namespace fedfm::model {

torch::Tensor Linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b = {});

// True when Linear(x, w, b) takes the CPU GEMM path for these inputs.
bool CpuLinearSupports(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b = {});

// The CPU GEMM path itself; throws c10::Error unless CpuLinearSupports.
torch::Tensor CpuLinear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b = {});

}  // namespace fedfm::model

#endif  // FEDFM_MODEL_LINEAR_H_
