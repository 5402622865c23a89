// Safetensors (https://huggingface.co/docs/safetensors) reader and writer.
// The reader maps the file and returns zero-copy tensor views kept alive by
// the mapping; it validates the header length, the JSON, dtypes, that each
// shape times its dtype size equals its byte range, that ranges lie inside the
// file and do not overlap. Errors name the tensor and the byte offset.
#ifndef FEDFM_PROTOCOLS_SAFETENSORS_H_
#define FEDFM_PROTOCOLS_SAFETENSORS_H_

#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "protocols/tensor.h"

namespace fedfm::protocols {

struct Safetensors {
  TensorMap tensors;  // in file order (ascending data offset)
  std::map<std::string, std::string> metadata;  // "__metadata__"
};

// Largest JSON header accepted (the reference implementation's limit).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// Maps `path` read-only. NotFound / InvalidArgument with the path, the tensor
// and the offset of the first problem.
absl::StatusOr<Safetensors> ReadSafetensors(const std::filesystem::path& path);

// Parses an in-memory file. Tensors view `bytes`, kept valid by `owner`
// (may be null when the caller keeps `bytes` alive longer than the result).
absl::StatusOr<Safetensors> ParseSafetensors(std::span<const std::byte> bytes,
                                             std::shared_ptr<const void> owner = nullptr);

std::vector<std::byte> SerializeSafetensors(const TensorMap& tensors,
                                            const std::map<std::string, std::string>& metadata = {});

// Writes atomically: a temporary file in the same directory, fsync, rename.
absl::Status WriteSafetensors(const std::filesystem::path& path, const TensorMap& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace fedfm::protocols

#endif  // FEDFM_PROTOCOLS_SAFETENSORS_H_
