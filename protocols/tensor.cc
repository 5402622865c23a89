#include "protocols/tensor.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "protocols/check.h"

namespace fedfm::protocols {
namespace {

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
  bool floating;
};

constexpr DTypeInfo kDTypes[kNumDTypes] = {
    {DType::kF32, "F32", 4, true},  {DType::kBF16, "BF16", 2, true},
    {DType::kF16, "F16", 2, true},  {DType::kI8, "I8", 1, false},
    {DType::kU8, "U8", 1, false},   {DType::kI16, "I16", 2, false},
    {DType::kI32, "I32", 4, false}, {DType::kI64, "I64", 8, false},
    {DType::kF64, "F64", 8, true},  {DType::kBool, "BOOL", 1, false},
};

const DTypeInfo& Info(DType dtype) {
  auto index = static_cast<size_t>(dtype);
  FEDFM_CHECK(index < kNumDTypes);
  return kDTypes[index];
}

template <typename T>
T LoadLE(const std::byte* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));  // the project targets little-endian hosts
  return value;
}

std::shared_ptr<std::vector<std::byte>> NewStorage(size_t nbytes) {
  return std::make_shared<std::vector<std::byte>>(nbytes);
}

}  // namespace

static_assert(std::endian::native == std::endian::little,
              "fedfm's tensor formats are little-endian; big-endian hosts are not supported");

size_t DTypeSize(DType dtype) { return Info(dtype).size; }
const char* DTypeName(DType dtype) { return Info(dtype).name; }
bool IsFloating(DType dtype) { return Info(dtype).floating; }

absl::StatusOr<DType> DTypeFromName(std::string_view name) {
  for (const DTypeInfo& info : kDTypes) {
    if (std::string_view(info.name) == name) return info.dtype;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype \"", std::string(name), "\""));
}

uint16_t FloatToBf16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if (std::isnan(value)) return static_cast<uint16_t>((bits >> 16) | 0x40);  // quiet NaN
  uint32_t rounding = 0x7FFF + ((bits >> 16) & 1);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float Bf16ToFloat(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

uint16_t FloatToF16(float value) {
  uint32_t x = std::bit_cast<uint32_t>(value);
  uint32_t sign = (x >> 16) & 0x8000;
  uint32_t abs = x & 0x7FFFFFFF;
  if (abs > 0x7F800000) return static_cast<uint16_t>(sign | 0x7E00);  // NaN
  if (abs >= 0x477FF000) return static_cast<uint16_t>(sign | 0x7C00);  // overflow -> inf
  if (abs < 0x38800000) {  // subnormal or zero in half precision
    if (abs < 0x33000000) return static_cast<uint16_t>(sign);  // rounds to zero
    uint32_t mantissa = (abs & 0x007FFFFF) | 0x00800000;
    int shift = 113 - static_cast<int>(abs >> 23) + 13;  // 126 - exp + 1 ... into 10 bits
    uint32_t half = mantissa >> shift;
    uint32_t rest = mantissa & ((1u << shift) - 1);
    uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (half & 1))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t rebased = abs - 0x38000000;  // exponent bias 127 -> 15
  uint32_t half = rebased >> 13;
  uint32_t rest = rebased & 0x1FFF;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) ++half;
  return static_cast<uint16_t>(sign | half);
}

float F16ToFloat(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3FF) << 13;
    }
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000 | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  return std::bit_cast<float>(bits);
}

int64_t NumElements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

std::string ShapeString(const Shape& shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

Tensor Tensor::Zeros(DType dtype, Shape shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.numel_ = NumElements(shape);
  FEDFM_CHECK(t.numel_ >= 0);
  t.shape_ = std::move(shape);
  auto storage = NewStorage(t.nbytes());
  t.data_ = storage->data();
  t.owner_ = std::move(storage);
  t.owned_ = true;
  return t;
}

Tensor Tensor::FromFloats(Shape shape, std::span<const float> values) {
  Tensor t = Zeros(DType::kF32, std::move(shape));
  FEDFM_CHECK(static_cast<size_t>(t.numel_) == values.size());
  if (!values.empty()) std::memcpy(const_cast<std::byte*>(t.data_), values.data(), t.nbytes());
  return t;
}

absl::StatusOr<Tensor> Tensor::FromBytes(DType dtype, Shape shape, std::span<const std::byte> bytes,
                                         float scale) {
  int64_t numel = NumElements(shape);
  if (numel < 0) return absl::InvalidArgumentError(absl::StrCat("invalid shape ", ShapeString(shape)));
  if (static_cast<uint64_t>(numel) * DTypeSize(dtype) != bytes.size()) {
    return absl::InvalidArgumentError(absl::StrCat("shape ", ShapeString(shape), " of ", DTypeName(dtype),
                                                   " needs ", numel * DTypeSize(dtype), " bytes, got ",
                                                   bytes.size()));
  }
  Tensor t = Zeros(dtype, std::move(shape));
  if (!bytes.empty()) std::memcpy(const_cast<std::byte*>(t.data_), bytes.data(), bytes.size());
  t.scale_ = scale;
  return t;
}

Tensor Tensor::View(DType dtype, Shape shape, std::shared_ptr<const void> owner,
                    std::span<const std::byte> bytes, float scale) {
  int64_t numel = NumElements(shape);
  FEDFM_CHECK(numel >= 0 && static_cast<uint64_t>(numel) * DTypeSize(dtype) == bytes.size());
  if (reinterpret_cast<uintptr_t>(bytes.data()) % DTypeSize(dtype) != 0) {
    return *FromBytes(dtype, std::move(shape), bytes, scale);
  }
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.numel_ = numel;
  t.scale_ = scale;
  t.owner_ = std::move(owner);
  t.data_ = bytes.data();
  return t;
}

std::span<std::byte> Tensor::mutable_bytes() {
  if (!owned_ || owner_.use_count() > 1) {
    auto storage = NewStorage(nbytes());
    if (nbytes() > 0) std::memcpy(storage->data(), data_, nbytes());
    data_ = storage->data();
    owner_ = std::move(storage);
    owned_ = true;
  }
  return {const_cast<std::byte*>(data_), nbytes()};
}

std::span<const float> Tensor::floats() const {
  FEDFM_CHECK_MSG(dtype_ == DType::kF32, "floats() needs an F32 tensor");
  return {reinterpret_cast<const float*>(data_), static_cast<size_t>(numel_)};
}

std::span<float> Tensor::mutable_floats() {
  FEDFM_CHECK_MSG(dtype_ == DType::kF32, "mutable_floats() needs an F32 tensor");
  auto bytes = mutable_bytes();
  return {reinterpret_cast<float*>(bytes.data()), static_cast<size_t>(numel_)};
}

std::vector<float> Tensor::ToFloat32() const {
  std::vector<float> out(static_cast<size_t>(numel_));
  const size_t n = out.size();
  const std::byte* p = data_;
  switch (dtype_) {
    case DType::kF32:
      if (n) std::memcpy(out.data(), p, n * 4);
      break;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) out[i] = Bf16ToFloat(LoadLE<uint16_t>(p + 2 * i));
      break;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) out[i] = F16ToFloat(LoadLE<uint16_t>(p + 2 * i));
      break;
    case DType::kI8:
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(LoadLE<int8_t>(p + i)) * scale_;
      break;
    case DType::kU8:
    case DType::kBool:
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(LoadLE<uint8_t>(p + i));
      break;
    case DType::kI16:
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(LoadLE<int16_t>(p + 2 * i));
      break;
    case DType::kI32:
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(LoadLE<int32_t>(p + 4 * i));
      break;
    case DType::kI64:
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(LoadLE<int64_t>(p + 8 * i));
      break;
    case DType::kF64:
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(LoadLE<double>(p + 8 * i));
      break;
  }
  return out;
}

Tensor Tensor::To(DType dtype) const {
  if (dtype == dtype_ && scale_ == 1.0f) return *this;
  std::vector<float> values = ToFloat32();
  Tensor out = Zeros(dtype, shape_);
  std::byte* q = const_cast<std::byte*>(out.data_);
  const size_t n = values.size();
  auto store = [&](size_t i, auto v) { std::memcpy(q + i * sizeof(v), &v, sizeof(v)); };
  switch (dtype) {
    case DType::kF32:
      if (n) std::memcpy(q, values.data(), n * 4);
      break;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) store(i, FloatToBf16(values[i]));
      break;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) store(i, FloatToF16(values[i]));
      break;
    case DType::kI8: {
      float max_abs = 0.0f;
      for (float v : values) max_abs = std::max(max_abs, std::fabs(v));
      out.scale_ = max_abs > 0.0f ? max_abs / 127.0f : 1.0f;
      for (size_t i = 0; i < n; ++i) {
        float r = std::nearbyint(values[i] / out.scale_);
        store(i, static_cast<int8_t>(std::clamp(r, -127.0f, 127.0f)));
      }
      break;
    }
    case DType::kU8:
    case DType::kBool:
      for (size_t i = 0; i < n; ++i) store(i, static_cast<uint8_t>(values[i]));
      break;
    case DType::kI16:
      for (size_t i = 0; i < n; ++i) store(i, static_cast<int16_t>(values[i]));
      break;
    case DType::kI32:
      for (size_t i = 0; i < n; ++i) store(i, static_cast<int32_t>(values[i]));
      break;
    case DType::kI64:
      for (size_t i = 0; i < n; ++i) store(i, static_cast<int64_t>(values[i]));
      break;
    case DType::kF64:
      for (size_t i = 0; i < n; ++i) store(i, static_cast<double>(values[i]));
      break;
  }
  return out;
}

bool Tensor::Identical(const Tensor& other) const {
  return dtype_ == other.dtype_ && shape_ == other.shape_ && scale_ == other.scale_ &&
         (nbytes() == 0 || std::memcmp(data_, other.data_, nbytes()) == 0);
}

absl::Status TensorMap::Insert(std::string name, Tensor tensor) {
  if (name.empty()) return absl::InvalidArgumentError("tensor name is empty");
  if (index_.contains(name)) {
    return absl::InvalidArgumentError(absl::StrCat("duplicate tensor \"", name, "\""));
  }
  index_.emplace(name, entries_.size());
  entries_.emplace_back(std::move(name), std::move(tensor));
  return absl::OkStatus();
}

void TensorMap::Set(const std::string& name, Tensor tensor) {
  if (Tensor* existing = FindMutable(name)) {
    *existing = std::move(tensor);
    return;
  }
  FEDFM_CHECK(Insert(name, std::move(tensor)).ok());
}

const Tensor* TensorMap::Find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

Tensor* TensorMap::FindMutable(std::string_view name) {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

const Tensor& TensorMap::at(std::string_view name) const {
  const Tensor* t = Find(name);
  FEDFM_CHECK_MSG(t != nullptr, "TensorMap::at: no such tensor");
  return *t;
}

std::vector<std::string> TensorMap::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& [name, _] : entries_) out.push_back(name);
  return out;
}

int64_t TensorMap::TotalElements() const {
  int64_t n = 0;
  for (const auto& [_, t] : entries_) n += t.numel();
  return n;
}

size_t TensorMap::TotalBytes() const {
  size_t n = 0;
  for (const auto& [_, t] : entries_) n += t.nbytes();
  return n;
}

}  // namespace fedfm::protocols
