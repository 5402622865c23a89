#include "model/torch_bridge.h"

#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "protocols/check.h"
#include "protocols/status_macros.h"

namespace fedfm::model {

torch::ScalarType ToTorchDType(protocols::DType dtype) {
  using protocols::DType;
  switch (dtype) {
    case DType::kF32: return torch::kFloat;
    case DType::kBF16: return torch::kBFloat16;
    case DType::kF16: return torch::kHalf;
    case DType::kI8: return torch::kChar;
    case DType::kU8: return torch::kByte;
    case DType::kI16: return torch::kShort;
    case DType::kI32: return torch::kInt;
    case DType::kI64: return torch::kLong;
    case DType::kF64: return torch::kDouble;
    case DType::kBool: return torch::kBool;
  }
  FEDFM_CHECK_MSG(false, "unknown protocols::DType");
}

absl::StatusOr<protocols::DType> FromTorchDType(torch::ScalarType dtype) {
  using protocols::DType;
  switch (dtype) {
    case torch::kFloat: return DType::kF32;
    case torch::kBFloat16: return DType::kBF16;
    case torch::kHalf: return DType::kF16;
    case torch::kChar: return DType::kI8;
    case torch::kByte: return DType::kU8;
    case torch::kShort: return DType::kI16;
    case torch::kInt: return DType::kI32;
    case torch::kLong: return DType::kI64;
    case torch::kDouble: return DType::kF64;
    case torch::kBool: return DType::kBool;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("torch dtype ", c10::toString(dtype), " has no host tensor counterpart"));
  }
}

torch::Tensor ToTorch(const protocols::Tensor& tensor) {
  const std::vector<int64_t>& shape = tensor.shape();
  if (tensor.dtype() == protocols::DType::kI8 && tensor.scale() != 1.0f) {
    std::vector<float> values = tensor.ToFloat32();
    return torch::from_blob(values.data(), shape, torch::kFloat).clone();
  }
  if (tensor.numel() == 0) return torch::empty(shape, torch::TensorOptions().dtype(ToTorchDType(tensor.dtype())));
  // The deleter owns a copy of the host tensor, which shares (and so keeps
  // alive) its storage.
  auto* keeper = new protocols::Tensor(tensor);
  void* data = const_cast<std::byte*>(keeper->bytes().data());
  return torch::from_blob(
      data, shape, [keeper](void*) { delete keeper; }, torch::TensorOptions().dtype(ToTorchDType(tensor.dtype())));
}

namespace {

absl::StatusOr<protocols::Tensor> Convert(const torch::Tensor& tensor, bool copy) {
  FEDFM_CHECK(tensor.defined());
  FEDFM_ASSIGN_OR_RETURN(protocols::DType dtype, FromTorchDType(tensor.scalar_type()));
  protocols::Shape shape(tensor.sizes().begin(), tensor.sizes().end());
  torch::Tensor host = tensor.detach();
  if (!host.device().is_cpu()) host = host.to(torch::kCPU);
  host = host.contiguous();
  auto bytes = std::span<const std::byte>(static_cast<const std::byte*>(host.data_ptr()),
                                          static_cast<size_t>(host.numel()) * host.element_size());
  if (copy || host.numel() == 0) return protocols::Tensor::FromBytes(dtype, std::move(shape), bytes);
  auto owner = std::make_shared<torch::Tensor>(host);
  return protocols::Tensor::View(dtype, std::move(shape), std::shared_ptr<const void>(owner, owner.get()), bytes);
}

}  // namespace

absl::StatusOr<protocols::Tensor> FromTorch(const torch::Tensor& tensor) { return Convert(tensor, /*copy=*/false); }

absl::StatusOr<protocols::Tensor> FromTorchCopy(const torch::Tensor& tensor) { return Convert(tensor, /*copy=*/true); }

std::vector<std::pair<std::string, torch::Tensor>> ToTorchMap(const protocols::TensorMap& tensors) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  out.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) out.emplace_back(name, ToTorch(tensor));
  return out;
}

absl::StatusOr<protocols::TensorMap> FromTorchMap(const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  protocols::TensorMap out;
  for (const auto& [name, tensor] : tensors) {
    auto host = FromTorchCopy(tensor);
    if (!host.ok()) return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\": ", host.status().message()));
    FEDFM_RETURN_IF_ERROR(out.Insert(name, *std::move(host)));
  }
  return out;
}

}  // namespace fedfm::model
