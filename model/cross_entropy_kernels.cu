// Fused cross-entropy over a [n, v] logit matrix: one thread block per row.
// The forward pass reads each row once, keeping a running (max, sum of
// exp(x - max)) pair per thread and merging the pairs across the block
// (online softmax); the backward pass reads the row again and writes the
// gradient in the logits' dtype. So a 128k-vocabulary batch costs one read of
// its bf16 logits forward and a read plus a write backward, where the unfused
// path writes and rereads a float32 copy and a float32 log-softmax.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "model/internal/cuda_device.cuh"
#include "model/internal/cuda_kernels.h"

namespace fedfm::model::internal::cuda {
namespace {

// A running softmax denominator: sum of exp(x - max) over the values seen.
struct MaxSum {
  float max = -INFINITY;
  float sum = 0.f;

  __device__ void Add(float x) {
    if (x > max) {
      sum = sum * __expf(max - x) + 1.f;
      max = x;
    } else if (!(x == -INFINITY && max == -INFINITY)) {
      sum += __expf(x - max);  // a NaN x makes the sum NaN
    }
  }
  __device__ void Merge(float other_max, float other_sum) {
    const float m = fmaxf(max, other_max);
    if (m == -INFINITY) {
      sum += other_sum;  // both empty; keeps a NaN
      return;
    }
    sum = sum * __expf(max - m) + other_sum * __expf(other_max - m);
    max = m;
  }
};

__device__ inline void BlockMerge(MaxSum& ms) {
  __shared__ float maxes[kRowThreads / 32], sums[kRowThreads / 32];
  for (int step = 16; step > 0; step /= 2) {
    const float m = __shfl_xor_sync(0xffffffffu, ms.max, step);
    const float s = __shfl_xor_sync(0xffffffffu, ms.sum, step);
    ms.Merge(m, s);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    maxes[warp] = ms.max;
    sums[warp] = ms.sum;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kRowThreads / 32; ++w) ms.Merge(maxes[w], sums[w]);
  }
}

template <typename T, bool kVectorized>
__global__ void __launch_bounds__(kRowThreads)
    ForwardKernel(const T* logits, int64_t v, const int64_t* labels, int64_t ignore_index, float* lse,
                  float* row_loss) {
  constexpr int kL = kLanes<T, kVectorized>;
  const int64_t row = blockIdx.x;
  const T* x = logits + row * v;
  MaxSum ms;
  for (int64_t j = threadIdx.x; j < RowUnits<T, kVectorized>(v); j += kRowThreads) {
    float values[kL];
    LoadLanes<T, kVectorized>(x, j, values);
#pragma unroll
    for (int k = 0; k < kL; ++k) ms.Add(values[k]);
  }
  BlockMerge(ms);
  if (threadIdx.x != 0) return;
  const float row_lse = ms.max + logf(ms.sum);
  lse[row] = row_lse;
  const int64_t label = labels[row];
  if (label == ignore_index) {
    row_loss[row] = 0.f;
  } else if (label < 0 || label >= v) {
    row_loss[row] = NAN;
  } else {
    row_loss[row] = row_lse - ToFloat(x[label]);
  }
}

template <typename T, bool kVectorized>
__global__ void __launch_bounds__(kRowThreads)
    BackwardKernel(const T* logits, int64_t v, const int64_t* labels, int64_t ignore_index, const float* lse,
                   const float* grad_loss, const float* count, T* grad) {
  constexpr int kL = kLanes<T, kVectorized>;
  const int64_t row = blockIdx.x;
  const T* x = logits + row * v;
  T* g = grad + row * v;
  const int64_t label = labels[row];
  const bool ignored = label == ignore_index;
  const float scale = ignored ? 0.f : *grad_loss / *count;
  const float row_lse = lse[row];
  for (int64_t j = threadIdx.x; j < RowUnits<T, kVectorized>(v); j += kRowThreads) {
    float values[kL];
    LoadLanes<T, kVectorized>(x, j, values);
#pragma unroll
    for (int k = 0; k < kL; ++k) {
      const int64_t e = j * kL + k;
      values[k] = ignored ? 0.f : (__expf(values[k] - row_lse) - (e == label ? 1.f : 0.f)) * scale;
    }
    StoreLanes<T, kVectorized>(g, j, values);
  }
}

template <typename T>
int Forward(const void* logits, int64_t n, int64_t v, const int64_t* labels, int64_t ignore_index, float* lse,
            float* row_loss, cudaStream_t stream) {
  if (n == 0) return 0;
  const T* x = static_cast<const T*>(logits);
  return WithVectorized(Vectorizable<T>(v, x), [&](auto vectorized) {
    ForwardKernel<T, decltype(vectorized)::value>
        <<<static_cast<unsigned>(n), kRowThreads, 0, stream>>>(x, v, labels, ignore_index, lse, row_loss);
    return static_cast<int>(cudaGetLastError());
  });
}

template <typename T>
int Backward(const void* logits, int64_t n, int64_t v, const int64_t* labels, int64_t ignore_index,
             const float* lse, const float* grad_loss, const float* count, void* grad_logits,
             cudaStream_t stream) {
  if (n == 0) return 0;
  const T* x = static_cast<const T*>(logits);
  T* g = static_cast<T*>(grad_logits);
  return WithVectorized(Vectorizable<T>(v, x, g), [&](auto vectorized) {
    BackwardKernel<T, decltype(vectorized)::value><<<static_cast<unsigned>(n), kRowThreads, 0, stream>>>(
        x, v, labels, ignore_index, lse, grad_loss, count, g);
    return static_cast<int>(cudaGetLastError());
  });
}

}  // namespace

int LaunchCrossEntropyForward(ElementType type, const void* logits, int64_t n, int64_t v, const int64_t* labels,
                              int64_t ignore_index, float* lse, float* row_loss, void* cuda_stream) {
  return WithElementType(type, [&](auto tag) {
    return Forward<decltype(tag)>(logits, n, v, labels, ignore_index, lse, row_loss,
                                  static_cast<cudaStream_t>(cuda_stream));
  });
}

int LaunchCrossEntropyBackward(ElementType type, const void* logits, int64_t n, int64_t v, const int64_t* labels,
                               int64_t ignore_index, const float* lse, const float* grad_loss, const float* count,
                               void* grad_logits, void* cuda_stream) {
  return WithElementType(type, [&](auto tag) {
    return Backward<decltype(tag)>(logits, n, v, labels, ignore_index, lse, grad_loss, count, grad_logits,
                                   static_cast<cudaStream_t>(cuda_stream));
  });
}

}  // namespace fedfm::model::internal::cuda
