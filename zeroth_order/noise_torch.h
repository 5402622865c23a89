// Zeroth-order noise on torch tensors, in place: the torch-facing half of
// noise.h. The device of the tensor picks the implementation at run time:
// CPU tensors use the torch-free core (threaded with at::parallel_for, which
// does not change any bit), CUDA tensors the kernels of noise_kernels.cu when
// fedfm was built with FEDFM_CUDA (FailedPrecondition otherwise). Both give
// the bits that docs/zeroth_order_noise.md specifies.
#ifndef FEDFM_ZEROTH_ORDER_NOISE_TORCH_H_
#define FEDFM_ZEROTH_ORDER_NOISE_TORCH_H_

#include <torch/torch.h>

#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "zeroth_order/noise_stream.h"

namespace fedfm::zeroth_order {

// tensor[i] = fl(tensor[i] + fl(alpha * z[offset + i])) over the flat
// elements of a contiguous float32 or bfloat16 tensor (bf16 rounded to
// nearest even). offset > 0 serves a shard holding elements [offset, ...)
// of a larger tensor.
// Bypasses autograd (like an update under torch::NoGradGuard; the version
// counter is bumped). InvalidArgument for another dtype or a non-contiguous
// tensor; FailedPrecondition for a CUDA tensor without FEDFM_CUDA or an
// unsupported device.
absl::Status AddScaledNoise(const torch::Tensor& tensor, const NoiseStream& stream, float alpha,
                            uint64_t offset = 0);

// One piece of a batched perturbation: `values` takes z[offset + i] of the
// stream (seed, tensor_index, kind) given to AddScaledNoiseSpans.
struct NoiseSpan {
  torch::Tensor values;  // contiguous float32 or bfloat16
  uint32_t tensor_index = 0;
  uint64_t offset = 0;
};

// AddScaledNoise(span.values, {seed, span.tensor_index, kind}, alpha,
// span.offset) for every span, with the same bits; float32 CUDA spans on one
// device share a kernel launch (up to 64 spans each) instead of one per span.
absl::Status AddScaledNoiseSpans(std::span<const NoiseSpan> spans, uint64_t seed, NoiseKind kind, float alpha);

// A new float32 tensor of `shape` on `device` holding z[offset .. offset + numel).
absl::StatusOr<torch::Tensor> NoiseTensor(const NoiseStream& stream, at::IntArrayRef shape,
                                          const torch::Device& device, uint64_t offset = 0);

// True when CUDA tensors can be perturbed (built with FEDFM_CUDA).
bool CudaNoiseAvailable();

}  // namespace fedfm::zeroth_order

#endif  // FEDFM_ZEROTH_ORDER_NOISE_TORCH_H_
