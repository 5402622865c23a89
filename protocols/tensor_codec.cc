#include "protocols/tensor_codec.h"

#include <cmath>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "protocols/check.h"
#include "protocols/status_macros.h"

namespace fedfm::protocols {
namespace {

constexpr char kMagic[4] = {'F', 'F', 'T', 'M'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 12;

template <typename T>
void Put(std::vector<std::byte>& out, T value) {
  size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &value, sizeof(T));
}

template <typename T>
T Get(const std::byte* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

Tensor WireTensor(const Tensor& t, const EncodeOptions& options) {
  if (options.wire_dtype && IsFloating(t.dtype()) && *options.wire_dtype != t.dtype()) {
    return t.To(*options.wire_dtype);
  }
  return t;
}

uint64_t TensorRecordBytes(const std::string& name, const Tensor& t) {
  return 4 + name.size() + 1 + 1 + 8 * t.shape().size() + 4 + 8 + t.nbytes();
}

// Parses one tensor record at `p` (with `available` bytes). Returns the number
// of bytes consumed, 0 if more bytes are needed, or an error.
absl::StatusOr<size_t> ParseRecord(const std::byte* p, size_t available, uint64_t stream_offset,
                                   const DecodeLimits& limits, TensorMap& map) {
  auto where = [&](size_t local) { return absl::StrCat("offset ", stream_offset + local); };
  if (available < 4) return 0;
  uint32_t name_len = Get<uint32_t>(p);
  if (name_len == 0 || name_len > limits.max_name_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("tensor #", map.size(), " at ", where(0),
                                                   ": name length ", name_len, " outside 1..",
                                                   limits.max_name_bytes));
  }
  if (available < 4 + name_len + 2) return 0;
  std::string name(reinterpret_cast<const char*>(p + 4), name_len);
  size_t at = 4 + name_len;
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" at ", where(at), ": ", what));
  };
  uint8_t dtype_code = Get<uint8_t>(p + at);
  uint8_t rank = Get<uint8_t>(p + at + 1);
  if (dtype_code >= kNumDTypes) return bad(absl::StrCat("unknown dtype code ", dtype_code));
  if (rank > limits.max_rank) return bad(absl::StrCat("rank ", rank, " exceeds ", limits.max_rank));
  at += 2;
  if (available < at + 8 * rank + 12) return 0;
  Shape shape(rank);
  for (uint8_t i = 0; i < rank; ++i) shape[i] = Get<int64_t>(p + at + 8 * i);
  at += 8 * rank;
  float scale = Get<float>(p + at);
  uint64_t payload = Get<uint64_t>(p + at + 4);
  auto dtype = static_cast<DType>(dtype_code);
  int64_t numel = NumElements(shape);
  if (numel < 0) return bad(absl::StrCat("invalid shape ", ShapeString(shape)));
  if (!std::isfinite(scale) || scale <= 0.0f) return bad(absl::StrCat("invalid scale ", scale));
  if (static_cast<uint64_t>(numel) > limits.max_total_bytes ||
      payload != static_cast<uint64_t>(numel) * DTypeSize(dtype)) {
    return bad(absl::StrCat("payload of ", payload, " bytes does not match shape ", ShapeString(shape),
                            " of ", DTypeName(dtype)));
  }
  if (payload > limits.max_total_bytes) return bad("payload exceeds the size limit");
  at += 12;
  if (available < at + payload) return 0;
  FEDFM_ASSIGN_OR_RETURN(Tensor tensor, Tensor::FromBytes(dtype, std::move(shape),
                                                          {p + at, static_cast<size_t>(payload)}, scale));
  absl::Status inserted = map.Insert(name, std::move(tensor));
  if (!inserted.ok()) return bad(std::string(inserted.message()));
  return at + payload;
}

}  // namespace

uint64_t EncodedSize(const TensorMap& map, const EncodeOptions& options) {
  uint64_t n = kHeaderBytes;
  for (const auto& [name, t] : map) {
    DType wire = (options.wire_dtype && IsFloating(t.dtype())) ? *options.wire_dtype : t.dtype();
    n += TensorRecordBytes(name, t) - t.nbytes() + static_cast<uint64_t>(t.numel()) * DTypeSize(wire);
  }
  return n;
}

std::vector<std::byte> EncodeTensorMap(const TensorMap& map, const EncodeOptions& options) {
  std::vector<std::byte> out;
  out.reserve(EncodedSize(map, options));
  out.resize(4);
  std::memcpy(out.data(), kMagic, 4);
  Put<uint32_t>(out, kVersion);
  Put<uint32_t>(out, static_cast<uint32_t>(map.size()));
  for (const auto& [name, original] : map) {
    Tensor t = WireTensor(original, options);
    Put<uint32_t>(out, static_cast<uint32_t>(name.size()));
    for (char c : name) out.push_back(static_cast<std::byte>(c));
    Put<uint8_t>(out, static_cast<uint8_t>(t.dtype()));
    Put<uint8_t>(out, static_cast<uint8_t>(t.shape().size()));
    for (int64_t d : t.shape()) Put<int64_t>(out, d);
    Put<float>(out, t.scale());
    Put<uint64_t>(out, t.nbytes());
    auto bytes = t.bytes();
    out.insert(out.end(), bytes.begin(), bytes.end());
  }
  return out;
}

absl::StatusOr<TensorMap> DecodeTensorMap(std::span<const std::byte> bytes, const DecodeLimits& limits) {
  StreamDecoder decoder(limits);
  FEDFM_RETURN_IF_ERROR(decoder.Append(bytes));
  return decoder.Finish();
}

StreamDecoder::StreamDecoder(DecodeLimits limits) : limits_(limits) {}

absl::Status StreamDecoder::Append(std::span<const std::byte> chunk) {
  if (!error_.ok()) return error_;
  bytes_seen_ += chunk.size();
  if (bytes_seen_ > limits_.max_total_bytes) {
    error_ = absl::ResourceExhaustedError(absl::StrCat("tensor stream exceeds the limit of ",
                                                       limits_.max_total_bytes, " bytes"));
    return error_;
  }
  pending_.insert(pending_.end(), chunk.begin(), chunk.end());
  error_ = Parse();
  return error_;
}

absl::Status StreamDecoder::Parse() {
  size_t consumed = 0;
  if (!header_done_) {
    if (pending_.size() < kHeaderBytes) return absl::OkStatus();
    if (std::memcmp(pending_.data(), kMagic, 4) != 0) {
      return absl::InvalidArgumentError("tensor stream at offset 0: bad magic (not a fedfm tensor map)");
    }
    uint32_t version = Get<uint32_t>(pending_.data() + 4);
    if (version != kVersion) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor stream at offset 4: unsupported version ", version));
    }
    expected_tensors_ = Get<uint32_t>(pending_.data() + 8);
    if (expected_tensors_ > limits_.max_tensors) {
      return absl::InvalidArgumentError(absl::StrCat("tensor stream at offset 8: ", expected_tensors_,
                                                     " tensors exceed the limit of ",
                                                     limits_.max_tensors));
    }
    header_done_ = true;
    consumed = kHeaderBytes;
  }
  while (map_.size() < expected_tensors_) {
    FEDFM_ASSIGN_OR_RETURN(size_t used, ParseRecord(pending_.data() + consumed, pending_.size() - consumed,
                                                    pending_offset_ + consumed, limits_, map_));
    if (used == 0) break;
    consumed += used;
  }
  if (map_.size() == expected_tensors_ && consumed < pending_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("tensor stream at offset ", pending_offset_ + consumed,
                                                   ": ", pending_.size() - consumed,
                                                   " trailing bytes after the last tensor"));
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(consumed));
  pending_offset_ += consumed;
  return absl::OkStatus();
}

absl::StatusOr<TensorMap> StreamDecoder::Finish() {
  if (!error_.ok()) return error_;
  if (!header_done_) {
    return absl::InvalidArgumentError(absl::StrCat("tensor stream truncated in its header (",
                                                   bytes_seen_, " bytes)"));
  }
  if (map_.size() != expected_tensors_) {
    return absl::InvalidArgumentError(absl::StrCat("tensor stream truncated at offset ", bytes_seen_,
                                                   ": ", map_.size(), " of ", expected_tensors_,
                                                   " tensors complete"));
  }
  return std::move(map_);
}

std::vector<std::span<const std::byte>> SplitChunks(std::span<const std::byte> bytes, size_t chunk_bytes) {
  FEDFM_CHECK(chunk_bytes > 0);
  std::vector<std::span<const std::byte>> chunks;
  for (size_t at = 0; at < bytes.size(); at += chunk_bytes) {
    chunks.push_back(bytes.subspan(at, std::min(chunk_bytes, bytes.size() - at)));
  }
  return chunks;
}

}  // namespace fedfm::protocols
