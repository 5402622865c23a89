// Byte codec for TensorMap: what travels on the wire (update uploads, model
// downloads) and what the simulation accounts as bytes up/down.
//
// Layout (all little-endian):
//   header:  magic "FFTM" | u32 version (1) | u32 tensor count
//   tensor:  u32 name length | name bytes | u8 dtype | u8 rank | i64 dims[rank]
//            | f32 scale | u64 payload bytes | payload
// Decoding validates every field against DecodeLimits and names the tensor and
// the byte offset of the first inconsistency.
#ifndef FEDFM_PROTOCOLS_TENSOR_CODEC_H_
#define FEDFM_PROTOCOLS_TENSOR_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "protocols/tensor.h"

namespace fedfm::protocols {

struct EncodeOptions {
  // Floating tensors are converted to this dtype on the wire (kF32, kBF16,
  // kF16 or kI8 with a per-tensor scale); unset keeps each tensor's dtype.
  std::optional<DType> wire_dtype;
};

struct DecodeLimits {
  uint64_t max_total_bytes = uint64_t{16} << 30;  // 16 GiB
  uint32_t max_tensors = 1u << 20;
  uint32_t max_name_bytes = 1024;
  uint32_t max_rank = 8;
};

std::vector<std::byte> EncodeTensorMap(const TensorMap& map, const EncodeOptions& options = {});
// Exact encoded size of EncodeTensorMap(map, options), without encoding.
uint64_t EncodedSize(const TensorMap& map, const EncodeOptions& options = {});

// The bytes of EncodeTensorMap(map, options), produced piece by piece into
// the caller's buffers (e.g. one upload chunk at a time) without building
// the whole encoding: each payload byte is copied once, from its tensor.
// `map` must outlive the encoder (and stay unchanged). Not thread-safe.
class StreamEncoder {
 public:
  explicit StreamEncoder(const TensorMap& map, const EncodeOptions& options = {});
  // Total bytes, == EncodedSize(map, options).
  uint64_t size() const { return size_; }
  // Bytes not produced yet.
  uint64_t remaining() const { return size_ - produced_; }
  // Writes the next min(out.size(), remaining()) bytes into `out`; returns
  // how many.
  size_t Next(std::span<std::byte> out);

 private:
  struct Segment {
    size_t offset;           // into headers_, when data is null
    size_t size;
    const std::byte* data;   // a payload, or null for a header
  };
  std::vector<std::byte> headers_;
  std::vector<Tensor> wire_;  // tensors as they travel (converted when asked)
  std::vector<Segment> segments_;
  uint64_t size_ = 0;
  uint64_t produced_ = 0;
  size_t segment_ = 0;
  size_t within_ = 0;
};

absl::StatusOr<TensorMap> DecodeTensorMap(std::span<const std::byte> bytes,
                                          const DecodeLimits& limits = {});

// Incremental decoder for chunked streams (gRPC uploads): feed chunks in order
// with Append, then Finish. Payload bytes are copied once, from the chunk
// into their tensor's own storage; memory is the decoded tensors plus at
// most one record header; a stream exceeding `limits.max_total_bytes` fails at the
// chunk that crosses it. Not thread-safe.
class StreamDecoder {
 public:
  explicit StreamDecoder(DecodeLimits limits = {});
  absl::Status Append(std::span<const std::byte> chunk);
  // InvalidArgument if the stream ended inside a tensor or held trailing bytes.
  absl::StatusOr<TensorMap> Finish();
  uint64_t bytes_seen() const { return bytes_seen_; }

  // A tensor record whose header has been read (internal).
  struct Record {
    std::string name;
    DType dtype = DType::kF32;
    Shape shape;
    float scale = 1.0f;
    uint64_t size = 0;            // payload bytes
    uint64_t filled = 0;          // payload bytes received
    uint64_t payload_offset = 0;  // stream offset of the payload
    std::unique_ptr<std::byte[]> storage;
  };

 private:
  absl::Status Consume(std::span<const std::byte> chunk);
  absl::Status ParsePending();
  absl::Status CompleteRecord();

  DecodeLimits limits_;
  std::vector<std::byte> pending_;  // the header being read, at most one
  uint64_t pending_offset_ = 0;     // stream offset of pending_[0]
  uint64_t bytes_seen_ = 0;
  bool header_done_ = false;
  uint32_t expected_tensors_ = 0;
  std::optional<Record> record_;    // the tensor whose payload is arriving
  TensorMap map_;
  absl::Status error_;
};

// Splits `bytes` into chunks of at most `chunk_bytes` (> 0), as views.
std::vector<std::span<const std::byte>> SplitChunks(std::span<const std::byte> bytes,
                                                    size_t chunk_bytes);

}  // namespace fedfm::protocols

#endif  // FEDFM_PROTOCOLS_TENSOR_CODEC_H_
