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

constexpr int kThreads = 256;

// The block-wide sum of each thread's `value`, returned to every thread.
__device__ inline float BlockSum(float value) {
  __shared__ float partial[kThreads / 32];
  __shared__ float total;
  for (int step = 16; step > 0; step /= 2) value += __shfl_xor_sync(0xffffffffu, value, step);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = value;
  __syncthreads();
  if (threadIdx.x == 0) {
    float sum = 0.f;
    for (int w = 0; w < kThreads / 32; ++w) sum += partial[w];
    total = sum;
  }
  __syncthreads();
  return total;
}

// Calls f(j, k) for this thread's share of a row of d elements: with
// vectorized, j indexes 16-byte vectors and k runs over their lanes;
// otherwise j is the element and k = 0 with one lane.
template <typename T, typename F>
__device__ inline void ForEach(int64_t d, bool vectorized, F&& f) {
  if (vectorized) {
    for (int64_t j = threadIdx.x; j < d / kVec<T>; j += kThreads) f(j);
    return;
  }
  for (int64_t j = threadIdx.x; j < d; j += kThreads) f(j);
}

// Loads lanes of vector j (or element j) of row p into v; returns the lane count.
template <typename T>
__device__ inline int Load(const T* p, int64_t j, bool vectorized, float v[kVec<T>]) {
  if (!vectorized) {
    v[0] = ToFloat(p[j]);
    return 1;
  }
  const uint4 bits = reinterpret_cast<const uint4*>(p)[j];
  const T* lanes = reinterpret_cast<const T*>(&bits);
#pragma unroll
  for (int k = 0; k < kVec<T>; ++k) v[k] = ToFloat(lanes[k]);
  return kVec<T>;
}

template <typename T>
__device__ inline void Store(T* p, int64_t j, bool vectorized, const float v[kVec<T>]) {
  if (!vectorized) {
    p[j] = FromFloat<T>(v[0]);
    return;
  }
  uint4 bits;
  T* lanes = reinterpret_cast<T*>(&bits);
#pragma unroll
  for (int k = 0; k < kVec<T>; ++k) lanes[k] = FromFloat<T>(v[k]);
  reinterpret_cast<uint4*>(p)[j] = bits;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    ForwardKernel(const T* x, const T* w, int64_t d, float eps, bool vectorized, T* y, float* rstd) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * d;
  T* yr = y + row * d;
  float ss = 0.f;
  ForEach<T>(d, vectorized, [&](int64_t j) {
    float v[kVec<T>];
    const int lanes = Load(xr, j, vectorized, v);
    for (int k = 0; k < lanes; ++k) ss += v[k] * v[k];
  });
  const float r = 1.f / sqrtf(BlockSum(ss) / static_cast<float>(d) + eps);
  if (threadIdx.x == 0) rstd[row] = r;
  ForEach<T>(d, vectorized, [&](int64_t j) {
    float v[kVec<T>], g[kVec<T>];
    const int lanes = Load(xr, j, vectorized, v);
    Load(w, j, vectorized, g);
    for (int k = 0; k < lanes; ++k) v[k] = ToFloat(FromFloat<T>(v[k] * r)) * g[k];
    Store(yr, j, vectorized, v);
  });
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    BackwardKernel(const T* dy, const T* x, const T* w, const float* rstd, int64_t d, bool vectorized, T* dx) {
  const int64_t row = blockIdx.x;
  const T* dyr = dy + row * d;
  const T* xr = x + row * d;
  T* dxr = dx + row * d;
  float dot = 0.f;
  ForEach<T>(d, vectorized, [&](int64_t j) {
    float a[kVec<T>], b[kVec<T>], c[kVec<T>];
    const int lanes = Load(dyr, j, vectorized, a);
    Load(w, j, vectorized, b);
    Load(xr, j, vectorized, c);
    for (int k = 0; k < lanes; ++k) dot += a[k] * b[k] * c[k];
  });
  const float r = rstd[row];
  const float c = r * r * BlockSum(dot) / static_cast<float>(d);
  ForEach<T>(d, vectorized, [&](int64_t j) {
    float a[kVec<T>], b[kVec<T>], v[kVec<T>];
    const int lanes = Load(dyr, j, vectorized, a);
    Load(w, j, vectorized, b);
    Load(xr, j, vectorized, v);
    for (int k = 0; k < lanes; ++k) v[k] = r * (a[k] * b[k] - v[k] * c);
    Store(dxr, j, vectorized, v);
  });
}

template <typename T>
int Forward(const void* x, const void* w, int64_t n, int64_t d, float eps, void* y, float* rstd,
            cudaStream_t stream) {
  if (n == 0) return 0;
  const bool vectorized = Vectorizable<T>(d, x, w, y);
  ForwardKernel<T><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
      static_cast<const T*>(x), static_cast<const T*>(w), d, eps, vectorized, static_cast<T*>(y), rstd);
  return static_cast<int>(cudaGetLastError());
}

template <typename T>
int Backward(const void* dy, const void* x, const void* w, const float* rstd, int64_t n, int64_t d, void* dx,
             cudaStream_t stream) {
  if (n == 0) return 0;
  const bool vectorized = Vectorizable<T>(d, dy, x, dx) && Vectorizable<T>(d, w);
  BackwardKernel<T><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
      static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(w), rstd, d, vectorized,
      static_cast<T*>(dx));
  return static_cast<int>(cudaGetLastError());
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
