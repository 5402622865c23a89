// CUDA launchers of the zeroth-order noise kernels (noise_kernels.cu), built
// only when FEDFM_CUDA is ON. Plain C++17 with no CUDA or LibTorch types, so
// that host code can call them without the CUDA headers; the torch-facing
// dispatch (noise_torch.cc through noise_cuda_dispatch.cc) is the caller.
//
// All pointers are device pointers of the current CUDA device. Kernels are
// launched asynchronously on `cuda_stream` (a cudaStream_t; nullptr = the
// legacy default stream). Each returns 0 on a successful launch or the
// cudaError_t value; CudaErrorName() spells it. Results are bit-identical to
// FillNoise / AddScaledNoise / AddScaledNoiseBf16 of noise.h for the same
// stream, offset and alpha (docs/zeroth_order_noise.md).
#ifndef FEDFM_ZEROTH_ORDER_NOISE_KERNELS_H_
#define FEDFM_ZEROTH_ORDER_NOISE_KERNELS_H_

#include <cstdint>

#include "zeroth_order/noise_stream.h"

namespace fedfm::zeroth_order::cuda {

// data[i] = fl(data[i] + fl(alpha * z[offset + i])), i < n: regenerates z
// inside the kernel, so z never touches memory. One kernel, both dtypes.
int LaunchAddScaledNoiseF32(float* data, int64_t n, NoiseStream stream, uint64_t offset,
                            float alpha, void* cuda_stream);
// bf16 as raw bits: data[i] = bf16_rne(fl(float(data[i]) + fl(alpha * z[offset + i]))).
int LaunchAddScaledNoiseBf16(uint16_t* data, int64_t n, NoiseStream stream, uint64_t offset,
                             float alpha, void* cuda_stream);
// Many float32 pieces perturbed by one kernel (the many small tensors of a
// LoRA adapter would otherwise cost a launch each): for every span,
// data[i] = fl(data[i] + fl(alpha * z[offset + i])) with z the stream
// (seed, tensor_index, kind). Bit-identical to LaunchAddScaledNoiseF32 span by span.
struct NoiseSpanF32 {
  float* data = nullptr;
  int64_t n = 0;
  uint32_t tensor_index = 0;
  uint64_t offset = 0;
};
inline constexpr int kMaxSpansPerLaunch = 64;  // kernel parameters stay under 4 KB
// count <= kMaxSpansPerLaunch.
int LaunchAddScaledNoiseSpansF32(const NoiseSpanF32* spans, int count, uint64_t seed, NoiseKind kind,
                                 float alpha, void* cuda_stream);
// out[i] = z[offset + i], i < n (for tests against the CPU reference).
int LaunchFillNoise(float* out, int64_t n, NoiseStream stream, uint64_t offset,
                    void* cuda_stream);

const char* CudaErrorName(int error);

}  // namespace fedfm::zeroth_order::cuda

#endif  // FEDFM_ZEROTH_ORDER_NOISE_KERNELS_H_
