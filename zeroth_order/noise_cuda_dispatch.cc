// Built when FEDFM_CUDA is ON (with a CUDA LibTorch): launches the kernels of
// noise_kernels.cu on the tensor's device and its current torch stream, so
// they are ordered with the surrounding torch work.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "protocols/status_macros.h"
#include "zeroth_order/internal/noise_cuda_dispatch.h"
#include "zeroth_order/noise_kernels.h"

namespace fedfm::zeroth_order::internal {
namespace {

absl::Status FromCuda(int error, const char* what) {
  if (error == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("zeroth-order ", what, ": CUDA launch failed: ",
                                          cuda::CudaErrorName(error)));
}

}  // namespace

bool CudaNoiseCompiledIn() { return true; }

absl::Status CudaAddScaledNoise(const torch::Tensor& tensor, const NoiseStream& stream,
                                float alpha, uint64_t offset) {
  const c10::cuda::CUDAGuard device_guard(tensor.device());
  void* cuda_stream = c10::cuda::getCurrentCUDAStream(tensor.device().index()).stream();
  if (tensor.scalar_type() == torch::kFloat32) {
    return FromCuda(cuda::LaunchAddScaledNoiseF32(tensor.data_ptr<float>(), tensor.numel(),
                                                  stream, offset, alpha, cuda_stream),
                    "noise update");
  }
  return FromCuda(cuda::LaunchAddScaledNoiseBf16(
                      reinterpret_cast<uint16_t*>(tensor.data_ptr<at::BFloat16>()),
                      tensor.numel(), stream, offset, alpha, cuda_stream),
                  "noise update");
}

absl::Status CudaAddScaledNoiseSpans(std::span<const NoiseSpan> spans, uint64_t seed, NoiseKind kind,
                                     float alpha) {
  if (spans.empty()) return absl::OkStatus();
  const torch::Device device = spans.front().values.device();
  const c10::cuda::CUDAGuard device_guard(device);
  void* cuda_stream = c10::cuda::getCurrentCUDAStream(device.index()).stream();
  cuda::NoiseSpanF32 batch[cuda::kMaxSpansPerLaunch];
  for (size_t first = 0; first < spans.size(); first += cuda::kMaxSpansPerLaunch) {
    const size_t count = std::min(spans.size() - first, static_cast<size_t>(cuda::kMaxSpansPerLaunch));
    for (size_t i = 0; i < count; ++i) {
      const NoiseSpan& s = spans[first + i];
      batch[i] = {s.values.data_ptr<float>(), s.values.numel(), s.tensor_index, s.offset};
    }
    FEDFM_RETURN_IF_ERROR(FromCuda(
        cuda::LaunchAddScaledNoiseSpansF32(batch, static_cast<int>(count), seed, kind, alpha, cuda_stream),
        "batched noise update"));
  }
  return absl::OkStatus();
}

absl::Status CudaFillNoise(const torch::Tensor& out, const NoiseStream& stream,
                           uint64_t offset) {
  const c10::cuda::CUDAGuard device_guard(out.device());
  void* cuda_stream = c10::cuda::getCurrentCUDAStream(out.device().index()).stream();
  return FromCuda(
      cuda::LaunchFillNoise(out.data_ptr<float>(), out.numel(), stream, offset, cuda_stream),
      "noise fill");
}

}  // namespace fedfm::zeroth_order::internal
