// Fused RMSNorm on CUDA: one thread block per row. Forward reads x once for
// the sum of squares and again (from cache) to write y; backward likewise
// for sum(dy * w * x) and dx. Where the ATen expression makes a float32 copy
// of x, squares it, takes the mean, scales, casts back and multiplies by w,
// each a pass over memory, this reads x and writes y once.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "model/internal/cuda_device.cuh"
#include "model/internal/cuda_kernels.h"

namespace fedfm::model::internal::cuda {
namespace {

// The block-wide sum of each thread's `value`, returned to every thread.
__device__ inline float BlockSum(float value) {
  __shared__ float partial[kRowThreads / 32];
  __shared__ float total;
  for (int step = 16; step > 0; step /= 2) value += __shfl_xor_sync(0xffffffffu, value, step);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = value;
  __syncthreads();
  if (threadIdx.x == 0) {
    float sum = 0.f;
    for (int w = 0; w < kRowThreads / 32; ++w) sum += partial[w];
    total = sum;
  }
  __syncthreads();
  return total;
}

template <typename T, bool kVectorized>
__global__ void __launch_bounds__(kRowThreads)
    ForwardKernel(const T* x, const T* w, int64_t d, float eps, T* y, float* rstd) {
  constexpr int kL = kLanes<T, kVectorized>;
  const int64_t row = blockIdx.x;
  const T* xr = x + row * d;
  T* yr = y + row * d;
  float ss = 0.f;
  for (int64_t j = threadIdx.x; j < RowUnits<T, kVectorized>(d); j += kRowThreads) {
    float v[kL];
    LoadLanes<T, kVectorized>(xr, j, v);
#pragma unroll
    for (int k = 0; k < kL; ++k) ss += v[k] * v[k];
  }
  const float r = 1.f / sqrtf(BlockSum(ss) / static_cast<float>(d) + eps);
  if (threadIdx.x == 0) rstd[row] = r;
  for (int64_t j = threadIdx.x; j < RowUnits<T, kVectorized>(d); j += kRowThreads) {
    float v[kL], g[kL];
    LoadLanes<T, kVectorized>(xr, j, v);
    LoadLanes<T, kVectorized>(w, j, g);
#pragma unroll
    for (int k = 0; k < kL; ++k) v[k] = ToFloat(FromFloat<T>(v[k] * r)) * g[k];
    StoreLanes<T, kVectorized>(yr, j, v);
  }
}

template <typename T, bool kVectorized>
__global__ void __launch_bounds__(kRowThreads)
    BackwardKernel(const T* dy, const T* x, const T* w, const float* rstd, int64_t d, T* dx) {
  constexpr int kL = kLanes<T, kVectorized>;
  const int64_t row = blockIdx.x;
  const T* dyr = dy + row * d;
  const T* xr = x + row * d;
  T* dxr = dx + row * d;
  float dot = 0.f;
  for (int64_t j = threadIdx.x; j < RowUnits<T, kVectorized>(d); j += kRowThreads) {
    float a[kL], b[kL], c[kL];
    LoadLanes<T, kVectorized>(dyr, j, a);
    LoadLanes<T, kVectorized>(w, j, b);
    LoadLanes<T, kVectorized>(xr, j, c);
#pragma unroll
    for (int k = 0; k < kL; ++k) dot += a[k] * b[k] * c[k];
  }
  const float r = rstd[row];
  const float c = r * r * BlockSum(dot) / static_cast<float>(d);
  for (int64_t j = threadIdx.x; j < RowUnits<T, kVectorized>(d); j += kRowThreads) {
    float a[kL], b[kL], v[kL];
    LoadLanes<T, kVectorized>(dyr, j, a);
    LoadLanes<T, kVectorized>(w, j, b);
    LoadLanes<T, kVectorized>(xr, j, v);
#pragma unroll
    for (int k = 0; k < kL; ++k) v[k] = r * (a[k] * b[k] - v[k] * c);
    StoreLanes<T, kVectorized>(dxr, j, v);
  }
}

template <typename T>
int Forward(const void* x, const void* w, int64_t n, int64_t d, float eps, void* y, float* rstd,
            cudaStream_t stream) {
  if (n == 0) return 0;
  return WithVectorized(Vectorizable<T>(d, x, w, y), [&](auto vectorized) {
    ForwardKernel<T, decltype(vectorized)::value><<<static_cast<unsigned>(n), kRowThreads, 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(w), d, eps, static_cast<T*>(y), rstd);
    return static_cast<int>(cudaGetLastError());
  });
}

template <typename T>
int Backward(const void* dy, const void* x, const void* w, const float* rstd, int64_t n, int64_t d, void* dx,
             cudaStream_t stream) {
  if (n == 0) return 0;
  const bool vectorized = Vectorizable<T>(d, dy, x, dx) && Vectorizable<T>(d, w);
  return WithVectorized(vectorized, [&](auto v) {
    BackwardKernel<T, decltype(v)::value><<<static_cast<unsigned>(n), kRowThreads, 0, stream>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(w), rstd, d,
        static_cast<T*>(dx));
    return static_cast<int>(cudaGetLastError());
  });
}

}  // namespace

int LaunchRmsNormForward(ElementType type, const void* x, const void* w, int64_t n, int64_t d, float eps, void* y,
                         float* rstd, void* cuda_stream) {
  return WithElementType(type, [&](auto tag) {
    return Forward<decltype(tag)>(x, w, n, d, eps, y, rstd, static_cast<cudaStream_t>(cuda_stream));
  });
}

int LaunchRmsNormBackward(ElementType type, const void* dy, const void* x, const void* w, const float* rstd,
                          int64_t n, int64_t d, void* dx, void* cuda_stream) {
  return WithElementType(type, [&](auto tag) {
    return Backward<decltype(tag)>(dy, x, w, rstd, n, d, dx, static_cast<cudaStream_t>(cuda_stream));
  });
}

const char* CudaErrorName(int error) { return cudaGetErrorName(static_cast<cudaError_t>(error)); }

}  // namespace fedfm::model::internal::cuda
