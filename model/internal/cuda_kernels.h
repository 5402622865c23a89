// CUDA launchers of the fused kernels of model/ (cross_entropy_kernels.cu,
// rms_norm_kernels.cu), built only when FEDFM_CUDA is ON. Plain C++ with no
// CUDA or LibTorch types: model/fused_ops_cuda.cc wraps them in autograd
// functions.
//
// Cross-entropy. logits: [n, v] row-major in their own dtype (float32, bf16 or fp16), read
// as they are: nothing is upcast to a float32 copy. Every sum is in float.
// labels: [n] int64; a row whose label equals `ignore_index` scores nothing.
// All pointers are device pointers of the current device; kernels run
// asynchronously on `cuda_stream` (a cudaStream_t). Each launcher returns 0 or
// the cudaError_t of the launch; CudaErrorName() spells it.
#ifndef FEDFM_MODEL_INTERNAL_CUDA_KERNELS_H_
#define FEDFM_MODEL_INTERNAL_CUDA_KERNELS_H_

#include <cstdint>

namespace fedfm::model::internal::cuda {

enum class ElementType { kFloat32, kBFloat16, kFloat16 };

// Per row r: lse[r] = log(sum_j exp(logits[r, j])) and
// row_loss[r] = lse[r] - logits[r, labels[r]], or 0 for an ignored row, or
// NaN for a label outside [0, v) (torch would stop the device instead).
int LaunchCrossEntropyForward(ElementType type, const void* logits, int64_t n, int64_t v,
                              const int64_t* labels, int64_t ignore_index, float* lse, float* row_loss,
                              void* cuda_stream);

// grad_logits[r, j] = (exp(logits[r, j] - lse[r]) - [j == labels[r]]) * (*grad_loss / *count),
// zero for ignored rows: the gradient of mean-over-scored-rows cross-entropy.
// grad_loss and count are device scalars (float), so no value is read back.
int LaunchCrossEntropyBackward(ElementType type, const void* logits, int64_t n, int64_t v,
                               const int64_t* labels, int64_t ignore_index, const float* lse,
                               const float* grad_loss, const float* count, void* grad_logits,
                               void* cuda_stream);

// RMSNorm over rows of width d, in the rounding order of the ATen expression
// (RmsNormReference): r = 1 / sqrt(sum(x^2) / d + eps) in float, then
// y = T(float(T(x * r)) * float(w)) (for float32 T, y = x * r * w).
// x, y: [n, d] of type `type`; w: [d] of the same type; rstd: [n] float (out).
int LaunchRmsNormForward(ElementType type, const void* x, const void* w, int64_t n, int64_t d, float eps, void* y,
                         float* rstd, void* cuda_stream);
// dx = r * (g - x * r^2 * sum(g * x) / d) with g = dy * w, per row, in float,
// stored as `type`. dy, x, dx: [n, d]; w: [d]; rstd from the forward.
int LaunchRmsNormBackward(ElementType type, const void* dy, const void* x, const void* w, const float* rstd,
                          int64_t n, int64_t d, void* dx, void* cuda_stream);

// Spells a cudaError_t value returned by any launcher above.
const char* CudaErrorName(int error);

}  // namespace fedfm::model::internal::cuda

#endif  // FEDFM_MODEL_INTERNAL_CUDA_KERNELS_H_
