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

// Bytes of the record header at `p` (name, dtype, shape, scale and payload
// size; the payload follows it): its full size once `available` bytes show
// it, else the size to wait for next (> available). Errors for a bad name
// length.
absl::StatusOr<size_t> RecordHeaderBytes(const std::byte* p, size_t available, uint64_t stream_offset,
                                         size_t tensor_index, const DecodeLimits& limits) {
  if (available < 4) return 4;
  uint32_t name_len = Get<uint32_t>(p);
  if (name_len == 0 || name_len > limits.max_name_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("tensor #", tensor_index, " at offset ", stream_offset,
                                                   ": name length ", name_len, " outside 1..",
                                                   limits.max_name_bytes));
  }
  if (available < 4 + name_len + 2) return 4 + name_len + 2;
  const uint8_t rank = Get<uint8_t>(p + 4 + name_len + 1);
  return 4 + name_len + 2 + 8 * static_cast<size_t>(std::min<uint32_t>(rank, limits.max_rank)) + 12;
}

// Parses and validates the complete record header at `p` (all
// RecordHeaderBytes of it).
absl::StatusOr<StreamDecoder::Record> ParseRecordHeader(const std::byte* p, uint64_t stream_offset,
                                                        const DecodeLimits& limits) {
  auto where = [&](size_t local) { return absl::StrCat("offset ", stream_offset + local); };
  uint32_t name_len = Get<uint32_t>(p);
  StreamDecoder::Record r;
  r.name.assign(reinterpret_cast<const char*>(p + 4), name_len);
  size_t at = 4 + name_len;
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", r.name, "\" at ", where(at), ": ", what));
  };
  uint8_t dtype_code = Get<uint8_t>(p + at);
  uint8_t rank = Get<uint8_t>(p + at + 1);
  if (dtype_code >= kNumDTypes) return bad(absl::StrCat("unknown dtype code ", dtype_code));
  if (rank > limits.max_rank) return bad(absl::StrCat("rank ", rank, " exceeds ", limits.max_rank));
  at += 2;
  r.shape.resize(rank);
  for (uint8_t i = 0; i < rank; ++i) r.shape[i] = Get<int64_t>(p + at + 8 * i);
  at += 8 * rank;
  r.scale = Get<float>(p + at);
  const uint64_t payload = Get<uint64_t>(p + at + 4);
  r.dtype = static_cast<DType>(dtype_code);
  int64_t numel = NumElements(r.shape);
  if (numel < 0) return bad(absl::StrCat("invalid shape ", ShapeString(r.shape)));
  if (!std::isfinite(r.scale) || r.scale <= 0.0f) return bad(absl::StrCat("invalid scale ", r.scale));
  if (static_cast<uint64_t>(numel) > limits.max_total_bytes ||
      payload != static_cast<uint64_t>(numel) * DTypeSize(r.dtype)) {
    return bad(absl::StrCat("payload of ", payload, " bytes does not match shape ", ShapeString(r.shape),
                            " of ", DTypeName(r.dtype)));
  }
  if (payload > limits.max_total_bytes) return bad("payload exceeds the size limit");
  r.size = payload;
  r.payload_offset = stream_offset + at + 12;
  return r;
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

StreamEncoder::StreamEncoder(const TensorMap& map, const EncodeOptions& options) {
  // Headers go into one buffer, payloads stay where they are (or in the wire
  // dtype copy); segments list both in stream order.
  auto header = [&](auto&& write) {
    const size_t at = headers_.size();
    write();
    segments_.push_back({at, headers_.size() - at, nullptr});
  };
  header([&] {
    headers_.resize(4);
    std::memcpy(headers_.data(), kMagic, 4);
    Put<uint32_t>(headers_, kVersion);
    Put<uint32_t>(headers_, static_cast<uint32_t>(map.size()));
  });
  wire_.reserve(map.size());
  for (const auto& entry : map) {
    const std::string& name = entry.first;  // not a structured binding: the lambda captures it
    wire_.push_back(WireTensor(entry.second, options));
    const Tensor& t = wire_.back();
    header([&] {
      Put<uint32_t>(headers_, static_cast<uint32_t>(name.size()));
      for (char c : name) headers_.push_back(static_cast<std::byte>(c));
      Put<uint8_t>(headers_, static_cast<uint8_t>(t.dtype()));
      Put<uint8_t>(headers_, static_cast<uint8_t>(t.shape().size()));
      for (int64_t d : t.shape()) Put<int64_t>(headers_, d);
      Put<float>(headers_, t.scale());
      Put<uint64_t>(headers_, t.nbytes());
    });
    if (t.nbytes() > 0) segments_.push_back({0, t.nbytes(), t.bytes().data()});
  }
  for (const Segment& s : segments_) size_ += s.size;
}

size_t StreamEncoder::Next(std::span<std::byte> out) {
  size_t written = 0;
  while (written < out.size() && segment_ < segments_.size()) {
    const Segment& s = segments_[segment_];
    const std::byte* from = (s.data != nullptr ? s.data : headers_.data() + s.offset) + within_;
    const size_t n = std::min(s.size - within_, out.size() - written);
    std::memcpy(out.data() + written, from, n);
    written += n;
    within_ += n;
    if (within_ == s.size) {
      ++segment_;
      within_ = 0;
    }
  }
  produced_ += written;
  return written;
}

std::vector<std::byte> EncodeTensorMap(const TensorMap& map, const EncodeOptions& options) {
  StreamEncoder encoder(map, options);
  std::vector<std::byte> out(static_cast<size_t>(encoder.size()));
  encoder.Next(out);
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
  error_ = Consume(chunk);
  return error_;
}

absl::Status StreamDecoder::Consume(std::span<const std::byte> chunk) {
  // Payload bytes go straight into their tensor's storage; only the stream
  // header and record headers pass through pending_, one field at a time.
  while (!chunk.empty()) {
    if (record_.has_value()) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(record_->size - record_->filled, chunk.size()));
      std::memcpy(record_->storage.get() + record_->filled, chunk.data(), n);
      record_->filled += n;
      chunk = chunk.subspan(n);
      if (record_->filled == record_->size) FEDFM_RETURN_IF_ERROR(CompleteRecord());
      continue;
    }
    if (header_done_ && map_.size() == expected_tensors_) {
      return absl::InvalidArgumentError(absl::StrCat("tensor stream at offset ", bytes_seen_ - chunk.size(), ": ",
                                                     chunk.size(), " trailing bytes after the last tensor"));
    }
    // Header bytes, up to the end of the (stream or record) header.
    for (;;) {
      size_t need = kHeaderBytes;
      if (header_done_) {
        FEDFM_ASSIGN_OR_RETURN(need, RecordHeaderBytes(pending_.data(), pending_.size(), pending_offset_,
                                                       map_.size(), limits_));
      }
      if (pending_.size() >= need) break;
      if (chunk.empty()) return absl::OkStatus();
      const size_t n = std::min(need - pending_.size(), chunk.size());
      pending_.insert(pending_.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
      chunk = chunk.subspan(n);
    }
    FEDFM_RETURN_IF_ERROR(ParsePending());
  }
  return absl::OkStatus();
}

absl::Status StreamDecoder::ParsePending() {
  if (!header_done_) {
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
  } else {
    FEDFM_ASSIGN_OR_RETURN(Record r, ParseRecordHeader(pending_.data(), pending_offset_, limits_));
    // Uninitialised storage: every byte is written before the tensor exists.
    r.storage.reset(new std::byte[std::max<uint64_t>(r.size, 1)]);
    record_ = std::move(r);
  }
  pending_offset_ += pending_.size();
  pending_.clear();
  if (record_.has_value() && record_->size == 0) return CompleteRecord();
  return absl::OkStatus();
}

absl::Status StreamDecoder::CompleteRecord() {
  Record r = *std::move(record_);
  record_.reset();
  pending_offset_ += r.size;
  const std::span<const std::byte> bytes(r.storage.get(), static_cast<size_t>(r.size));
  std::shared_ptr<const void> owner(std::move(r.storage));
  absl::Status inserted = map_.Insert(r.name, Tensor::View(r.dtype, std::move(r.shape), std::move(owner), bytes, r.scale));
  if (!inserted.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor \"", r.name, "\" at offset ", r.payload_offset, ": ", inserted.message()));
  }
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
