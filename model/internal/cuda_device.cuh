// Device-side helpers shared by the CUDA kernels of model/: element
// conversions in float, row access in 16-byte vectors or single elements, the
// launchers' dispatch on element type and vector access. Included only by .cu
// files.
#ifndef FEDFM_MODEL_INTERNAL_CUDA_DEVICE_CUH_
#define FEDFM_MODEL_INTERNAL_CUDA_DEVICE_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

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

// Threads per block of the row kernels (one block per row).
constexpr int kRowThreads = 256;

// Elements per access unit: a 16-byte vector, or one element.
template <typename T, bool kVectorized>
constexpr int kLanes = kVectorized ? kVec<T> : 1;

// Access units in a row of d elements (d divisible by kLanes).
template <typename T, bool kVectorized>
__device__ inline int64_t RowUnits(int64_t d) {
  return d / kLanes<T, kVectorized>;
}

// v[k] = float(p[j * kLanes + k]): unit j of row p.
template <typename T, bool kVectorized>
__device__ inline void LoadLanes(const T* p, int64_t j, float (&v)[kLanes<T, kVectorized>]) {
  if constexpr (kVectorized) {
    const uint4 bits = reinterpret_cast<const uint4*>(p)[j];
    const T* lanes = reinterpret_cast<const T*>(&bits);
#pragma unroll
    for (int k = 0; k < kVec<T>; ++k) v[k] = ToFloat(lanes[k]);
  } else {
    v[0] = ToFloat(p[j]);
  }
}

// p[j * kLanes + k] = T(v[k]), rounded to nearest.
template <typename T, bool kVectorized>
__device__ inline void StoreLanes(T* p, int64_t j, const float (&v)[kLanes<T, kVectorized>]) {
  if constexpr (kVectorized) {
    uint4 bits;
    T* lanes = reinterpret_cast<T*>(&bits);
#pragma unroll
    for (int k = 0; k < kVec<T>; ++k) lanes[k] = FromFloat<T>(v[k]);
    reinterpret_cast<uint4*>(p)[j] = bits;
  } else {
    p[j] = FromFloat<T>(v[0]);
  }
}

// f(std::true_type{}) when `vectorized`, else f(std::false_type{}): picks the
// kernel instantiation.
template <typename F>
int WithVectorized(bool vectorized, F&& f) {
  return vectorized ? f(std::true_type{}) : f(std::false_type{});
}

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
