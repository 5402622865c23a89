// The CUDA side of noise_torch.cc. CMake compiles exactly one definition:
// noise_cuda_dispatch.cc (FEDFM_CUDA ON: launches noise_kernels.cu on the
// current torch CUDA stream) or noise_cuda_none.cc (OFF: FailedPrecondition).
// So no translation unit needs #ifdef CUDA.
#ifndef FEDFM_ZEROTH_ORDER_INTERNAL_NOISE_CUDA_DISPATCH_H_
#define FEDFM_ZEROTH_ORDER_INTERNAL_NOISE_CUDA_DISPATCH_H_

#include <torch/torch.h>

#include "absl/status/status.h"
#include "zeroth_order/noise_stream.h"
#include "zeroth_order/noise_torch.h"

namespace fedfm::zeroth_order::internal {

bool CudaNoiseCompiledIn();
// `tensor`: contiguous, float32 or bfloat16, on a CUDA device (checked by the caller).
absl::Status CudaAddScaledNoise(const torch::Tensor& tensor, const NoiseStream& stream,
                                float alpha, uint64_t offset);
// Every span's values: contiguous float32 on one CUDA device (checked by the caller).
absl::Status CudaAddScaledNoiseSpans(std::span<const NoiseSpan> spans, uint64_t seed, NoiseKind kind,
                                     float alpha);
// `out`: contiguous float32 on a CUDA device.
absl::Status CudaFillNoise(const torch::Tensor& out, const NoiseStream& stream,
                           uint64_t offset);

}  // namespace fedfm::zeroth_order::internal

#endif  // FEDFM_ZEROTH_ORDER_INTERNAL_NOISE_CUDA_DISPATCH_H_
