// Counter-based zeroth-order noise on host buffers, free of LibTorch so that
// the coordinator can regenerate perturbations (seed-pool replay) without it.
//
// z[i] of a NoiseStream is specified bit-exactly in docs/zeroth_order_noise.md:
// Philox-4x32-10 keyed by the seed, counted by (element block, tensor index,
// kind), Box-Muller with fixed float arithmetic. Every function here returns
// the same bits for the same stream and element, whatever the chunking, the
// thread count or the machine (the CUDA kernels in noise_kernels.cu too).
//
// Thread safety: all functions are reentrant; distinct buffers may be
// filled from distinct threads.
#ifndef FEDFM_ZEROTH_ORDER_NOISE_H_
#define FEDFM_ZEROTH_ORDER_NOISE_H_

#include <cstdint>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "protocols/tensor.h"
#include "zeroth_order/noise_stream.h"

namespace fedfm::zeroth_order {

// "gaussian" | "rademacher" (protocols::ZerothOrderOptions::noise).
absl::StatusOr<NoiseKind> ParseNoiseKind(const std::string& name);
const char* NoiseKindName(NoiseKind kind);

// z[index] of `stream`. Slow (one Philox block per call): for tests.
float NoiseAt(const NoiseStream& stream, uint64_t index);

// out[i] = z[offset + i] for i < out.size().
void FillNoise(const NoiseStream& stream, uint64_t offset, std::span<float> out);

// data[i] = fl(data[i] + fl(alpha * z[offset + i])): the one update rule of
// zeroth-order training (perturb, restore, step). Rounded in float, never fused.
void AddScaledNoise(const NoiseStream& stream, uint64_t offset, float alpha,
                    std::span<float> data);
// bf16 storage (raw bits): data[i] = bf16(fl(float(data[i]) + fl(alpha * z[offset + i]))),
// rounded to nearest even.
void AddScaledNoiseBf16(const NoiseStream& stream, uint64_t offset, float alpha,
                        std::span<uint16_t> data);

// The same three, split into `num_threads` contiguous element ranges run on
// std::threads (1 = inline; small buffers always run inline). The result is
// bit-identical to the single-threaded call for every num_threads >= 1.
void ParallelFillNoise(const NoiseStream& stream, uint64_t offset, std::span<float> out,
                       int num_threads);
void ParallelAddScaledNoise(const NoiseStream& stream, uint64_t offset, float alpha,
                            std::span<float> data, int num_threads);
void ParallelAddScaledNoiseBf16(const NoiseStream& stream, uint64_t offset, float alpha,
                                std::span<uint16_t> data, int num_threads);

// theta_i += alpha * z(seed, tensor_index = i, kind) for every tensor i of
// `state`, i being the insertion position. InvalidArgument naming the tensor
// if one is neither F32 nor BF16 (nothing is changed then).
absl::Status AddScaledNoise(protocols::TensorMap& state, uint64_t seed, NoiseKind kind,
                            float alpha, int num_threads = 1);

}  // namespace fedfm::zeroth_order

#endif  // FEDFM_ZEROTH_ORDER_NOISE_H_
