#include "zeroth_order/noise_torch.h"

#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <span>

#include "absl/strings/str_cat.h"
#include "protocols/status_macros.h"
#include "zeroth_order/internal/noise_cuda_dispatch.h"
#include "zeroth_order/noise.h"

namespace fedfm::zeroth_order {
namespace {

// Elements per at::parallel_for task; any split gives the same bits.
constexpr int64_t kGrain = int64_t{1} << 15;

absl::Status CheckPerturbable(const torch::Tensor& t) {
  if (!t.defined()) return absl::InvalidArgumentError("zeroth-order noise: undefined tensor");
  if (t.scalar_type() != torch::kFloat32 && t.scalar_type() != torch::kBFloat16) {
    return absl::InvalidArgumentError(absl::StrCat(
        "zeroth-order noise: tensor of dtype ", std::string(c10::toString(t.scalar_type())),
        "; only float32 and bfloat16 are trainable"));
  }
  if (!t.is_contiguous()) {
    return absl::InvalidArgumentError("zeroth-order noise: tensor is not contiguous");
  }
  return absl::OkStatus();
}

// The in-place write bypassed autograd; tell it the tensor changed.
void BumpVersion(const torch::Tensor& t) {
  if (!t.is_inference()) torch::autograd::impl::bump_version(t);
}

}  // namespace

bool CudaNoiseAvailable() { return internal::CudaNoiseCompiledIn(); }

absl::Status AddScaledNoise(const torch::Tensor& tensor, const NoiseStream& stream, float alpha,
                            uint64_t offset) {
  if (absl::Status st = CheckPerturbable(tensor); !st.ok()) return st;
  if (tensor.is_cuda()) {
    if (absl::Status st = internal::CudaAddScaledNoise(tensor, stream, alpha, offset); !st.ok()) {
      return st;
    }
    BumpVersion(tensor);
    return absl::OkStatus();
  }
  if (!tensor.device().is_cpu()) {
    return absl::FailedPreconditionError(absl::StrCat("zeroth-order noise: unsupported device ",
                                                      tensor.device().str()));
  }
  if (tensor.scalar_type() == torch::kFloat32) {
    float* data = tensor.data_ptr<float>();
    at::parallel_for(0, tensor.numel(), kGrain, [&](int64_t begin, int64_t end) {
      zeroth_order::AddScaledNoise(stream, offset + begin, alpha,
                                   std::span<float>(data + begin, end - begin));
    });
  } else {
    uint16_t* data = reinterpret_cast<uint16_t*>(tensor.data_ptr<at::BFloat16>());
    at::parallel_for(0, tensor.numel(), kGrain, [&](int64_t begin, int64_t end) {
      AddScaledNoiseBf16(stream, offset + begin, alpha,
                         std::span<uint16_t>(data + begin, end - begin));
    });
  }
  BumpVersion(tensor);
  return absl::OkStatus();
}

absl::Status AddScaledNoiseSpans(std::span<const NoiseSpan> spans, uint64_t seed, NoiseKind kind, float alpha) {
  const auto batched = [&](const NoiseSpan& s) {
    return s.values.defined() && s.values.is_cuda() && s.values.scalar_type() == torch::kFloat32 &&
           s.values.is_contiguous() && s.values.device() == spans.front().values.device();
  };
  if (internal::CudaNoiseCompiledIn() && !spans.empty() && std::all_of(spans.begin(), spans.end(), batched)) {
    FEDFM_RETURN_IF_ERROR(internal::CudaAddScaledNoiseSpans(spans, seed, kind, alpha));
    for (const NoiseSpan& s : spans) BumpVersion(s.values);
    return absl::OkStatus();
  }
  for (const NoiseSpan& s : spans) {
    FEDFM_RETURN_IF_ERROR(AddScaledNoise(s.values, NoiseStream{seed, s.tensor_index, kind}, alpha, s.offset));
  }
  return absl::OkStatus();
}

absl::StatusOr<torch::Tensor> NoiseTensor(const NoiseStream& stream, at::IntArrayRef shape,
                                          const torch::Device& device, uint64_t offset) {
  torch::Tensor out;
  try {
    out = torch::empty(shape, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  } catch (const c10::Error& e) {
    return absl::FailedPreconditionError(absl::StrCat(
        "zeroth-order noise: cannot allocate on ", device.str(), ": ", e.what_without_backtrace()));
  }
  if (out.is_cuda()) {
    if (absl::Status st = internal::CudaFillNoise(out, stream, offset); !st.ok()) return st;
    return out;
  }
  if (!out.device().is_cpu()) {
    return absl::FailedPreconditionError(
        absl::StrCat("zeroth-order noise: unsupported device ", out.device().str()));
  }
  float* data = out.data_ptr<float>();
  at::parallel_for(0, out.numel(), kGrain, [&](int64_t begin, int64_t end) {
    FillNoise(stream, offset + begin, std::span<float>(data + begin, end - begin));
  });
  return out;
}

}  // namespace fedfm::zeroth_order
