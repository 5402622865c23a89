// Whether a tensor carries a forward-mode tangent (level 0, the only level
// fedfm uses: forward-gradient steps). The fused CPU and CUDA kernels do not
// propagate tangents, so callers fall back to ATen expressions for such inputs.
#ifndef FEDFM_MODEL_INTERNAL_TANGENT_H_
#define FEDFM_MODEL_INTERNAL_TANGENT_H_

#include <torch/torch.h>

namespace fedfm::model::internal {

inline bool HasTangent(const torch::Tensor& t) { return t.defined() && t._fw_grad(/*level=*/0).defined(); }

}  // namespace fedfm::model::internal

#endif  // FEDFM_MODEL_INTERNAL_TANGENT_H_
