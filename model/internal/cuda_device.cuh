// Device-side helpers shared by the CUDA kernels of model/: element
// conversions in float and 16-byte vector widths. Included only by .cu files.
#ifndef FEDFM_MODEL_INTERNAL_CUDA_DEVICE_CUH_
#define FEDFM_MODEL_INTERNAL_CUDA_DEVICE_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "model/internal/cuda_kernels.h"

namespace fedfm::model::internal::cuda {

__device__ inline float ToFloat(float x) { return x; }
__device__ inline float ToFloat(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ inline float ToFloat(__half x) { return __half2float(x); }

template <typename T>
__device__ inline T FromFloat(float x);
template <>
__device__ inline float FromFloat<float>(float x) { return x; }
template <>
__device__ inline __nv_bfloat16 FromFloat<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ inline __half FromFloat<__half>(float x) { return __float2half_rn(x); }

// Elements per 16-byte vector load.
template <typename T>
constexpr int kVec = 16 / static_cast<int>(sizeof(T));

// f(T{}) with T the element type named by `type` (the launchers' dispatch);
// cudaErrorInvalidValue for a value outside the enum.
template <typename F>
int WithElementType(ElementType type, F&& f) {
  switch (type) {
    case ElementType::kFloat32:
      return f(float{});
    case ElementType::kBFloat16:
      return f(__nv_bfloat16{});
    case ElementType::kFloat16:
      return f(__half{});
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

// Whether rows of `d` elements at these addresses allow 16-byte loads.
template <typename T>
inline bool Vectorizable(int64_t d, const void* a, const void* b = nullptr, const void* c = nullptr) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return d % kVec<T> == 0 && aligned(a) && (b == nullptr || aligned(b)) && (c == nullptr || aligned(c));
}

}  // namespace fedfm::model::internal::cuda

#endif  // FEDFM_MODEL_INTERNAL_CUDA_DEVICE_CUH_
