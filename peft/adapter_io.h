// LoRA adapters on disk in the Hugging Face PEFT layout, so that
// `PeftModel.from_pretrained(base, dir)` loads what fedfm trains and fedfm
// loads what PEFT saves. Torch-free.
//
// A directory holds:
//   adapter_config.json         PEFT's LoraConfig (peft_type "LORA", r,
//                               lora_alpha, target_modules, lora_dropout,
//                               use_rslora, bias "none", task_type,
//                               base_model_name_or_path, fan_in_fan_out false, ...)
//   adapter_model.safetensors   the LoRA tensors under PEFT's saved names
//                               (base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight;
//                               PEFT strips the adapter name ".default" on
//                               save) and, for sequence classification, the
//                               head base_model.model.score.weight
//                               (modules_to_save ["score"]); metadata
//                               {"format": "pt"}
//   partial_blocks.safetensors  (fedfm only, optional) full weights of top
//                               blocks trained by partial-layer training,
//                               under the base checkpoint's HF names. PEFT
//                               ignores the file; `fedfm adapter merge` applies it.
//
// Loading accepts names with the adapter name still in them
// ("lora_A.default.weight", "score.modules_to_save.default.weight"),
// converts every tensor to float32, and refuses what fedfm cannot apply
// (DoRA, bias training, fan_in_fan_out, per-module rank or alpha patterns,
// other PEFT types), naming the key.
#ifndef FEDFM_PEFT_ADAPTER_IO_H_
#define FEDFM_PEFT_ADAPTER_IO_H_

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "peft/state.h"
#include "protocols/tensor.h"

namespace fedfm::peft {

inline constexpr char kAdapterConfigFile[] = "adapter_config.json";
inline constexpr char kAdapterWeightsFile[] = "adapter_model.safetensors";
inline constexpr char kPartialBlocksFile[] = "partial_blocks.safetensors";

struct AdapterConfig {
  int r = 0;
  double lora_alpha = 0;
  double lora_dropout = 0;
  bool use_rslora = false;
  // PEFT module names ("q_proj", ...). A regex string in the file is kept in
  // target_modules_regex instead ("all-linear" is expanded).
  std::vector<std::string> target_modules;
  std::string target_modules_regex;
  std::string base_model_name_or_path;
  std::string task_type = "CAUSAL_LM";       // or "SEQ_CLS" with a head
  std::vector<std::string> modules_to_save;  // {"score"} with a head
};

struct Adapter {
  AdapterConfig config;
  // LoRA tensors and the head under the state's names (peft/state.h), F32.
  protocols::TensorMap tensors;
  // Full block weights (partial_blocks.safetensors), HF names, F32; may be empty.
  protocols::TensorMap full_weights;
};

// adapter_config.json text for `config` (the keys PEFT's LoraConfig writes).
std::string AdapterConfigJson(const AdapterConfig& config);
// Parses adapter_config.json text; `source` names it in errors.
absl::StatusOr<AdapterConfig> ParseAdapterConfigJson(const std::string& text, const std::string& source);

// Writes `adapter` into `dir` (created when missing; files replaced
// atomically). InvalidArgument when a tensor is neither a LoRA tensor nor the
// head, or config.r disagrees with the tensors.
absl::Status SaveAdapter(const std::filesystem::path& dir, const Adapter& adapter);
// NotFound naming the missing file; InvalidArgument naming the file and
// key / tensor; Unimplemented for PEFT features fedfm does not apply.
absl::StatusOr<Adapter> LoadAdapter(const std::filesystem::path& dir);

// The adapter of a global state (peft/state.h layout): LoRA tensors and head
// into `tensors`, full block weights into `full_weights`; r and
// target_modules are read off the tensors, task_type / modules_to_save set
// from the head; alpha, dropout, rslora and base_model from `hyper`.
absl::StatusOr<Adapter> AdapterFromState(const protocols::TensorMap& state, const AdapterConfig& hyper);
// The global state of an adapter: its tensors, then its full weights.
protocols::TensorMap StateFromAdapter(const Adapter& adapter);

// AdapterFromState with the hyperparameters of `spec` (alpha, dropout,
// rslora, rank) and base_model_name_or_path = `base_model`, saved into `dir`
// (SaveAdapter): a run's trained state as a PEFT adapter directory.
absl::StatusOr<Adapter> SaveStateAsAdapter(const std::filesystem::path& dir, const protocols::TensorMap& state,
                                           const LoraSpec& spec, const std::string& base_model);

}  // namespace fedfm::peft

#endif  // FEDFM_PEFT_ADAPTER_IO_H_
