// Whole adapter tasks behind a torch-free interface, for `fedfm adapter
// export | merge | info` and `fedfm model eval --adapter`. LibTorch errors
// become statuses here, never exceptions.
#ifndef FEDFM_PEFT_TASKS_H_
#define FEDFM_PEFT_TASKS_H_

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/tasks.h"
#include "peft/adapter_io.h"

namespace fedfm::peft {

struct AdapterTensorInfo {
  std::string name;
  std::vector<int64_t> shape;
  std::string file;  // adapter_model.safetensors or partial_blocks.safetensors
};

struct AdapterSummary {
  std::filesystem::path path;
  AdapterConfig config;
  double scale = 0;                 // alpha / r, or alpha / sqrt(r) with rsLoRA
  int num_layers = 0;               // distinct blocks with LoRA modules
  int num_modules = 0;              // LoRA modules (A, B pairs)
  int64_t lora_parameters = 0;
  int64_t head_parameters = 0;
  int64_t full_weight_parameters = 0;
  std::vector<AdapterTensorInfo> tensors;
};
// Reads an adapter directory (peft/adapter_io.h).
absl::StatusOr<AdapterSummary> DescribeAdapter(const std::filesystem::path& dir);

struct ExportRequest {
  // A global state (.safetensors, peft/state.h layout: a coordinator model
  // version, or fedfm's own adapter_model.safetensors) or an adapter directory.
  std::filesystem::path input;
  std::filesystem::path out;
  // Hyperparameters to record; for a directory input, unset ones keep the
  // directory's values. For a state file, alpha defaults to 2 r.
  std::optional<double> alpha;
  std::optional<double> dropout;
  std::optional<bool> rslora;
  std::optional<std::string> base_model;
};
absl::StatusOr<AdapterSummary> ExportAdapter(const ExportRequest& request);

struct MergeRequest {
  std::filesystem::path model;    // llama2.c .bin or HF directory
  std::filesystem::path adapter;  // adapter directory
  std::filesystem::path out;      // a new HF checkpoint directory
  // Stored precision of the output: "" = the base's ("F32", "BF16", "F16"), or one of those.
  std::string dtype;
};
struct MergeResult {
  std::filesystem::path out;
  std::string base_format;        // "llama2c" or "huggingface"
  std::string dtype;              // stored precision written
  int merged_modules = 0;         // projections with W + s B A
  int replaced_tensors = 0;       // full block weights from partial_blocks.safetensors
  bool dropped_head = false;      // a classification head has no place in a causal LM checkpoint
  std::vector<std::string> files; // written, relative to out
};
// Base + adapter -> a Hugging Face checkpoint directory (config.json and
// model.safetensors; for an HF base its tokenizer files are copied, for a
// llama2.c base config.json is written from its header and the weights are in
// HF layout and rotary convention, so transformers and fedfm both load it;
// the llama2.c tokenizer.bin is not converted: pass it with --tokenizer).
// The merge runs in float32 on the CPU; the base model is not modified.
absl::StatusOr<MergeResult> MergeAdapterIntoModel(const MergeRequest& request);

// model::EvaluateText with the adapter in `adapter_dir` applied (through the
// LoRA hook, not merged).
absl::StatusOr<model::EvalResult> EvaluateTextWithAdapter(const model::EvalRequest& request,
                                                          const std::filesystem::path& adapter_dir);

// config.json text of an HF LlamaForCausalLM / Qwen2ForCausalLM checkpoint of `config`.
std::string HfConfigJson(const model::ModelConfig& config, const std::string& torch_dtype);

}  // namespace fedfm::peft

#endif  // FEDFM_PEFT_TASKS_H_
