// CUDA kernels of the zeroth-order noise. The arithmetic is
// internal/noise_math.h, shared verbatim with the CPU reference (noise.cc):
// device code there uses __fmul_rn/__fadd_rn/__fdiv_rn/__fsqrt_rn, which
// nvcc never fuses or approximates, so z is bit-identical to the CPU's.
// Compiled with --fmad=false as a second guard.
//
// Mapping: one thread per group of 4 consecutive elements (a Gaussian Philox
// block), grid-stride; Rademacher threads recompute their 128-element Philox
// block (the kernel stays memory-bound either way).
#include <cuda_runtime.h>

#include <cstdint>

#include "zeroth_order/internal/noise_math.h"
#include "zeroth_order/noise_kernels.h"

namespace fedfm::zeroth_order::cuda {
namespace {

namespace nm = ::fedfm::zeroth_order::internal;

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

// z of the 4 elements 4q .. 4q+3 of `s`.
__device__ inline void QuadNoise(const NoiseStream& s, uint64_t q, float z[4]) {
  if (s.kind == NoiseKind::kGaussian) {
    nm::GaussianBlock(s, q, z);
    return;
  }
  const uint64_t e = q * 4;
  const Philox4x32Counter x = nm::NoiseBlockBits(s, e / nm::kRademacherPerBlock);
  const uint32_t first = static_cast<uint32_t>(e % nm::kRademacherPerBlock);
  for (int j = 0; j < 4; ++j) z[j] = nm::RademacherFromBits(x, first + j);
}

__device__ inline void Store(float* data, int64_t i, float alpha, float z) {
  data[i] = nm::AxpyElement(data[i], alpha, z);
}
__device__ inline void Store(uint16_t* data, int64_t i, float alpha, float z) {
  data[i] = nm::FloatToBf16Bits(nm::AxpyElement(nm::Bf16BitsToFloat(data[i]), alpha, z));
}

// The fused step over this thread's quads (grid-stride over x): regenerate z
// for elements [offset, offset + n) and apply theta += alpha * z in place.
// T = float or uint16_t (bf16 bits).
template <typename T>
__device__ inline void AddScaledNoiseRange(T* data, int64_t n, const NoiseStream& s, uint64_t offset, float alpha) {
  const uint64_t first_quad = offset / 4;
  const uint64_t num_quads = (offset + n + 3) / 4 - first_quad;
  for (uint64_t t = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; t < num_quads;
       t += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
    const uint64_t q = first_quad + t;
    float z[4];
    QuadNoise(s, q, z);
    for (int j = 0; j < 4; ++j) {
      const uint64_t e = q * 4 + j;
      if (e >= offset && e < offset + n) Store(data, static_cast<int64_t>(e - offset), alpha, z[j]);
    }
  }
}

template <typename T>
__global__ void AddScaledNoiseKernel(T* data, int64_t n, NoiseStream s, uint64_t offset, float alpha) {
  AddScaledNoiseRange(data, n, s, offset, alpha);
}

__global__ void FillNoiseKernel(float* out, int64_t n, NoiseStream s, uint64_t offset) {
  const uint64_t first_quad = offset / 4;
  const uint64_t num_quads = (offset + n + 3) / 4 - first_quad;
  for (uint64_t t = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; t < num_quads;
       t += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
    const uint64_t q = first_quad + t;
    float z[4];
    QuadNoise(s, q, z);
    for (int j = 0; j < 4; ++j) {
      const uint64_t e = q * 4 + j;
      if (e >= offset && e < offset + n) out[e - offset] = z[j];
    }
  }
}

struct SpanBatch {
  NoiseSpanF32 spans[kMaxSpansPerLaunch];
};

// blockIdx.y picks the span; the x blocks stride over its quads.
__global__ void AddScaledNoiseSpansKernel(SpanBatch batch, uint64_t seed, NoiseKind kind, float alpha) {
  const NoiseSpanF32& span = batch.spans[blockIdx.y];
  AddScaledNoiseRange(span.data, span.n, NoiseStream{seed, span.tensor_index, kind}, span.offset, alpha);
}

unsigned GridFor(int64_t n, uint64_t offset) {
  const uint64_t quads = (offset + n + 3) / 4 - offset / 4;
  const uint64_t blocks = (quads + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < static_cast<uint64_t>(kMaxBlocks) ? blocks : kMaxBlocks);
}

}  // namespace

int LaunchAddScaledNoiseF32(float* data, int64_t n, NoiseStream stream, uint64_t offset,
                            float alpha, void* cuda_stream) {
  if (n <= 0) return 0;
  AddScaledNoiseKernel<float><<<GridFor(n, offset), kThreads, 0,
                                static_cast<cudaStream_t>(cuda_stream)>>>(data, n, stream, offset,
                                                                          alpha);
  return static_cast<int>(cudaGetLastError());
}

int LaunchAddScaledNoiseBf16(uint16_t* data, int64_t n, NoiseStream stream, uint64_t offset,
                             float alpha, void* cuda_stream) {
  if (n <= 0) return 0;
  AddScaledNoiseKernel<uint16_t><<<GridFor(n, offset), kThreads, 0,
                                   static_cast<cudaStream_t>(cuda_stream)>>>(data, n, stream,
                                                                             offset, alpha);
  return static_cast<int>(cudaGetLastError());
}

int LaunchAddScaledNoiseSpansF32(const NoiseSpanF32* spans, int count, uint64_t seed, NoiseKind kind,
                                 float alpha, void* cuda_stream) {
  if (count <= 0) return 0;
  if (count > kMaxSpansPerLaunch) return static_cast<int>(cudaErrorInvalidValue);
  SpanBatch batch;
  unsigned grid_x = 1;
  for (int i = 0; i < count; ++i) {
    batch.spans[i] = spans[i];
    if (spans[i].n > 0) {
      const unsigned g = GridFor(spans[i].n, spans[i].offset);
      if (g > grid_x) grid_x = g;
    }
  }
  AddScaledNoiseSpansKernel<<<dim3(grid_x, static_cast<unsigned>(count)), kThreads, 0,
                              static_cast<cudaStream_t>(cuda_stream)>>>(batch, seed, kind, alpha);
  return static_cast<int>(cudaGetLastError());
}

int LaunchFillNoise(float* out, int64_t n, NoiseStream stream, uint64_t offset,
                    void* cuda_stream) {
  if (n <= 0) return 0;
  FillNoiseKernel<<<GridFor(n, offset), kThreads, 0, static_cast<cudaStream_t>(cuda_stream)>>>(
      out, n, stream, offset);
  return static_cast<int>(cudaGetLastError());
}

const char* CudaErrorName(int error) { return cudaGetErrorName(static_cast<cudaError_t>(error)); }

}  // namespace fedfm::zeroth_order::cuda
