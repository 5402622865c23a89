// Host tensors and TensorMap: the project's currency for trainable state,
// updates and checkpoints below the model layer. Deliberately free of
// LibTorch, so that protocols/, aggregation/ and coordinator/ build and run
// without it; model/ converts to and from torch::Tensor.
#ifndef FEDFM_PROTOCOLS_TENSOR_H_
#define FEDFM_PROTOCOLS_TENSOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedfm::protocols {

enum class DType : uint8_t {
  kF32 = 0,
  kBF16 = 1,
  kF16 = 2,
  kI8 = 3,  // optionally quantized: value = int8 * scale
  kU8 = 4,
  kI16 = 5,
  kI32 = 6,
  kI64 = 7,
  kF64 = 8,
  kBool = 9,
};
inline constexpr int kNumDTypes = 10;

// Bytes per element.
size_t DTypeSize(DType dtype);
// Safetensors spelling: "F32", "BF16", "F16", "I8", "U8", "I16", "I32", "I64", "F64", "BOOL".
const char* DTypeName(DType dtype);
absl::StatusOr<DType> DTypeFromName(std::string_view name);
bool IsFloating(DType dtype);

// Scalar conversions (round to nearest even; NaN stays NaN).
uint16_t FloatToBf16(float value);
float Bf16ToFloat(uint16_t bits);
uint16_t FloatToF16(float value);
float F16ToFloat(uint16_t bits);

using Shape = std::vector<int64_t>;
// Product of the dims; -1 if any dim is negative or the product overflows int64.
int64_t NumElements(const Shape& shape);
std::string ShapeString(const Shape& shape);

// A dense, contiguous, row-major tensor on the host. Value semantics with
// copy-on-write storage: copies are cheap and share bytes until one of them
// asks for mutable access. Storage may be a read-only view into a mapped file
// (safetensors), kept alive by the tensor. Not thread-safe for concurrent
// mutation of one object; distinct copies may be used from distinct threads.
class Tensor {
 public:
  Tensor() = default;

  // Zero-filled tensor. Shape dims must be >= 0.
  static Tensor Zeros(DType dtype, Shape shape);
  // F32 tensor holding a copy of `values`; values.size() must equal the shape's elements.
  static Tensor FromFloats(Shape shape, std::span<const float> values);
  // Tensor holding a copy of raw little-endian `bytes`.
  static absl::StatusOr<Tensor> FromBytes(DType dtype, Shape shape,
                                          std::span<const std::byte> bytes, float scale = 1.0f);
  // Zero-copy view of `bytes`, kept valid by `owner` (a copy instead when
  // `bytes` is not aligned to the element size). bytes.size() must match.
  static Tensor View(DType dtype, Shape shape, std::shared_ptr<const void> owner,
                     std::span<const std::byte> bytes, float scale = 1.0f);

  bool defined() const { return data_ != nullptr || numel_ == 0; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * DTypeSize(dtype_); }
  // Per-tensor scale of quantized int8 data (1 otherwise).
  float scale() const { return scale_; }

  std::span<const std::byte> bytes() const { return {data_, nbytes()}; }
  // Mutable bytes; copies the storage first if it is shared or a view.
  std::span<std::byte> mutable_bytes();

  // Typed access to F32 data (FEDFM_CHECKs the dtype). Storage is always
  // aligned to the element size: View() copies misaligned bytes.
  std::span<const float> floats() const;
  std::span<float> mutable_floats();

  // Values as float32 (bf16/f16 widened, int8 multiplied by scale, ints cast).
  std::vector<float> ToFloat32() const;
  // This tensor converted to `dtype` (float types round to nearest even;
  // to kI8 quantizes symmetrically with scale = max|x| / 127).
  Tensor To(DType dtype) const;

  // Bitwise equality of dtype, shape, scale and bytes.
  bool Identical(const Tensor& other) const;

 private:
  DType dtype_ = DType::kF32;
  Shape shape_;
  int64_t numel_ = 0;
  float scale_ = 1.0f;
  std::shared_ptr<const void> owner_;  // keeps data_ alive
  const std::byte* data_ = nullptr;
  bool owned_ = false;  // owner_ is a std::vector<std::byte> we created
};

// Ordered name -> tensor. Iteration follows insertion order, which is the
// order of every serialization and of every reduction over tensors.
class TensorMap {
 public:
  using Entry = std::pair<std::string, Tensor>;

  // InvalidArgument (naming it) if `name` is already present or empty.
  absl::Status Insert(std::string name, Tensor tensor);
  // Inserts or replaces.
  void Set(const std::string& name, Tensor tensor);
  const Tensor* Find(std::string_view name) const;
  Tensor* FindMutable(std::string_view name);
  bool Contains(std::string_view name) const { return Find(name) != nullptr; }
  // FEDFM_CHECKs that `name` exists.
  const Tensor& at(std::string_view name) const;

  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  std::vector<std::string> names() const;
  int64_t TotalElements() const;
  size_t TotalBytes() const;

  auto begin() const { return entries_.begin(); }
  auto end() const { return entries_.end(); }
  auto begin() { return entries_.begin(); }
  auto end() { return entries_.end(); }

 private:
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace fedfm::protocols

#endif  // FEDFM_PROTOCOLS_TENSOR_H_
