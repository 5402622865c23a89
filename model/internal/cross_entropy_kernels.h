// CUDA launchers of the fused cross-entropy (model/cross_entropy_kernels.cu),
// built only when FEDFM_CUDA is ON. Plain C++ with no CUDA or LibTorch types:
// model/fused_loss_cuda.cc wraps them in an autograd function.
//
// logits: [n, v] row-major in their own dtype (float32, bf16 or fp16), read
// as they are: nothing is upcast to a float32 copy. Every sum is in float.
// labels: [n] int64; a row whose label equals `ignore_index` scores nothing.
// All pointers are device pointers of the current device; kernels run
// asynchronously on `cuda_stream` (a cudaStream_t). Each launcher returns 0 or
// the cudaError_t of the launch; CrossEntropyErrorName() spells it.
#ifndef FEDFM_MODEL_INTERNAL_CROSS_ENTROPY_KERNELS_H_
#define FEDFM_MODEL_INTERNAL_CROSS_ENTROPY_KERNELS_H_

#include <cstdint>

namespace fedfm::model::internal::cuda {

enum class LogitType { kFloat32, kBFloat16, kFloat16 };

// Per row r: lse[r] = log(sum_j exp(logits[r, j])) and
// row_loss[r] = lse[r] - logits[r, labels[r]], or 0 for an ignored row, or
// NaN for a label outside [0, v) (torch would stop the device instead).
int LaunchCrossEntropyForward(LogitType type, const void* logits, int64_t n, int64_t v,
                              const int64_t* labels, int64_t ignore_index, float* lse, float* row_loss,
                              void* cuda_stream);

// grad_logits[r, j] = (exp(logits[r, j] - lse[r]) - [j == labels[r]]) * (*grad_loss / *count),
// zero for ignored rows: the gradient of mean-over-scored-rows cross-entropy.
// grad_loss and count are device scalars (float), so no value is read back.
int LaunchCrossEntropyBackward(LogitType type, const void* logits, int64_t n, int64_t v,
                               const int64_t* labels, int64_t ignore_index, const float* lse,
                               const float* grad_loss, const float* count, void* grad_logits,
                               void* cuda_stream);

const char* CrossEntropyErrorName(int error);

}  // namespace fedfm::model::internal::cuda

#endif  // FEDFM_MODEL_INTERNAL_CROSS_ENTROPY_KERNELS_H_
