// Conversions between the project's torch-free host tensors
// (protocols::Tensor, TensorMap) and torch::Tensor. Zero-copy where the
// layouts allow it: each side then keeps the other's storage alive.
//
// Aliasing contract. A zero-copy result shares bytes with its source:
//   - ToTorch's result views storage that protocols::Tensor treats as
//     immutable (copy-on-write, possibly a read-only file mapping): never
//     write into it; clone() first.
//   - FromTorch's result sees later in-place writes to the torch tensor (an
//     optimizer step, say). Use FromTorchCopy for a snapshot.
#ifndef FEDFM_MODEL_TORCH_BRIDGE_H_
#define FEDFM_MODEL_TORCH_BRIDGE_H_

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "protocols/tensor.h"

namespace fedfm::model {

// dtype mapping (F32 <-> kFloat, BF16 <-> kBFloat16, F16 <-> kHalf,
// I8 <-> kChar, U8 <-> kByte, I16 <-> kShort, I32 <-> kInt, I64 <-> kLong,
// F64 <-> kDouble, BOOL <-> kBool).
torch::ScalarType ToTorchDType(protocols::DType dtype);
// InvalidArgument for dtypes without a protocols counterpart (complex, ...).
absl::StatusOr<protocols::DType> FromTorchDType(torch::ScalarType dtype);

// A CPU tensor viewing `tensor`'s bytes (no copy; read-only by contract),
// except for int8 with a per-tensor scale other than 1, which is dequantized
// into a new float32 tensor (value = int8 * scale).
torch::Tensor ToTorch(const protocols::Tensor& tensor);

// A host tensor of `tensor`'s values. Zero-copy for a contiguous CPU tensor
// (aliasing as above); otherwise a copy (other devices, non-contiguous).
// Works on tensors that require grad (their data, detached).
// InvalidArgument for unsupported dtypes.
absl::StatusOr<protocols::Tensor> FromTorch(const torch::Tensor& tensor);
// As FromTorch, always copying: a snapshot independent of `tensor`.
absl::StatusOr<protocols::Tensor> FromTorchCopy(const torch::Tensor& tensor);

// Whole maps, order kept. ToTorchMap views (see ToTorch); FromTorchMap copies
// (snapshots), InvalidArgument naming the first unsupported tensor or a
// duplicate name.
std::vector<std::pair<std::string, torch::Tensor>> ToTorchMap(const protocols::TensorMap& tensors);
absl::StatusOr<protocols::TensorMap> FromTorchMap(const std::vector<std::pair<std::string, torch::Tensor>>& tensors);

}  // namespace fedfm::model

#endif  // FEDFM_MODEL_TORCH_BRIDGE_H_
