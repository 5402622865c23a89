// Format details shared by checkpoint.cc (torch-free inspection) and
// loader.cc (loading weights). Not a public interface.
#ifndef FEDFM_MODEL_INTERNAL_CHECKPOINT_FORMAT_H_
#define FEDFM_MODEL_INTERNAL_CHECKPOINT_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/config.h"

namespace fedfm::model::internal {

inline constexpr int64_t kLlama2cHeaderBytes = 7 * 4;

// One float32 tensor of a llama2.c file: where it lies and where it goes.
struct Llama2cTensor {
  std::string name;            // HF name
  std::vector<int64_t> shape;  // HF shape
  int64_t offset = 0;          // bytes from the start of the file
  // Rows to permute from adjacent-pair to half rotary order: the number of
  // heads of a wq (n_heads) or wk (n_kv_heads) matrix; 0 for other tensors.
  int64_t rope_heads = 0;
};

// Parses the 7-int32 header. InvalidArgument naming `file` on nonsense
// values or a newer (magic "ak42") export.
absl::StatusOr<ModelConfig> ParseLlama2cHeader(std::span<const std::byte> bytes, const std::string& file);

// Every weight of a llama2.c file of `file_size` bytes. InvalidArgument
// naming `file` and the first tensor that does not fit (truncation), or the
// count of unexpected trailing bytes.
absl::StatusOr<std::vector<Llama2cTensor>> Llama2cLayout(const ModelConfig& config, int64_t file_size,
                                                         const std::string& file);

// Parses a Hugging Face config.json. InvalidArgument naming `file` and the key.
absl::StatusOr<ModelConfig> ParseHfConfig(const std::string& json_text, const std::string& file);

// The safetensors files of an HF directory and, for sharded checkpoints, the
// tensor -> file map of model.safetensors.index.json (empty when unsharded).
struct HfWeightFiles {
  std::vector<std::filesystem::path> files;
  std::vector<std::pair<std::string, std::filesystem::path>> weight_map;
};
absl::StatusOr<HfWeightFiles> FindHfWeightFiles(const std::filesystem::path& dir);

}  // namespace fedfm::model::internal

#endif  // FEDFM_MODEL_INTERNAL_CHECKPOINT_FORMAT_H_
