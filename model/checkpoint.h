// What a checkpoint on disk holds, read without loading its weights (and
// without LibTorch): the format, the ModelConfig, the stored precision.
//
// Formats:
//   - llama2.c `.bin` (legacy version-0 export): 7 int32 (dim, hidden_dim,
//     n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative
//     vocab_size means an untied classifier is stored last), then float32
//     weights grouped by kind across layers (token embedding, attention norms,
//     wq, wk, wv, wo, FFN norms, w1, w2, w3, final norm, the RoPE tables,
//     [classifier]). rope_theta 10000, norm_eps 1e-5.
//   - Hugging Face directory: config.json (LlamaForCausalLM or
//     Qwen2ForCausalLM) and model.safetensors, or model.safetensors.index.json
//     naming shards; float32, bfloat16 or float16.
#ifndef FEDFM_MODEL_CHECKPOINT_H_
#define FEDFM_MODEL_CHECKPOINT_H_

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/config.h"

namespace fedfm::model {

enum class CheckpointFormat { kLlama2c, kHuggingFace };
// "llama2c" or "huggingface".
const char* CheckpointFormatName(CheckpointFormat format);

struct CheckpointInfo {
  CheckpointFormat format = CheckpointFormat::kLlama2c;
  std::filesystem::path path;  // the .bin file, or the HF directory
  ModelConfig config;          // rope_style is always kHalves (loaders permute llama2.c)
  std::string dtype;           // stored precision of the weights: "F32", "BF16" or "F16"
  std::vector<std::filesystem::path> weight_files;  // files holding the weights
};

// A directory, or a path to a config.json, is a Hugging Face checkpoint;
// anything else is read as a llama2.c `.bin`. NotFound when `path` does not
// exist; InvalidArgument naming the file and the problem (bad header,
// truncated data, unsupported architecture or config key).
absl::StatusOr<CheckpointInfo> ReadCheckpointInfo(const std::filesystem::path& path);

}  // namespace fedfm::model

#endif  // FEDFM_MODEL_CHECKPOINT_H_
