#include "peft/tasks.h"

#include <set>
#include <system_error>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "model/checkpoint.h"
#include "model/loader.h"
#include "model/torch_bridge.h"
#include "peft/state.h"
#include "peft/trainable.h"
#include "protocols/file_util.h"
#include "protocols/safetensors.h"
#include "protocols/status_macros.h"

namespace fedfm::peft {
namespace {

using protocols::TensorMap;

absl::Status TorchError(const char* what, const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  return absl::InternalError(absl::StrCat(what, ": ", c10_error ? c10_error->what_without_backtrace() : e.what()));
}

AdapterSummary Summarize(const std::filesystem::path& path, const Adapter& adapter) {
  AdapterSummary s;
  s.path = path;
  s.config = adapter.config;
  s.scale = LoraScale(adapter.config.lora_alpha, adapter.config.r, adapter.config.use_rslora);
  std::set<int> layers;
  for (const auto& [name, t] : adapter.tensors) {
    LoraTensorId id;
    if (ParseLoraTensorName(name, &id)) {
      layers.insert(id.layer);
      s.lora_parameters += t.numel();
      if (id.matrix == LoraMatrix::kA) ++s.num_modules;
    } else {
      s.head_parameters += t.numel();
    }
    s.tensors.push_back({name, t.shape(), kAdapterWeightsFile});
  }
  for (const auto& [name, t] : adapter.full_weights) {
    s.full_weight_parameters += t.numel();
    s.tensors.push_back({name, t.shape(), kPartialBlocksFile});
  }
  s.num_layers = static_cast<int>(layers.size());
  return s;
}

absl::StatusOr<torch::ScalarType> StoredDType(const std::string& name) {
  if (name == "F32") return torch::kFloat;
  if (name == "BF16") return torch::kBFloat16;
  if (name == "F16") return torch::kHalf;
  return absl::InvalidArgumentError(absl::StrCat("dtype must be F32, BF16 or F16, got \"", name, "\""));
}

absl::Status CopyIfPresent(const std::filesystem::path& from, const std::filesystem::path& to,
                           std::vector<std::string>* files) {
  if (!std::filesystem::exists(from)) return absl::OkStatus();
  FEDFM_ASSIGN_OR_RETURN(std::string bytes, protocols::ReadFileToString(from));
  FEDFM_RETURN_IF_ERROR(protocols::WriteFileAtomic(to, bytes));
  files->push_back(to.filename().string());
  return absl::OkStatus();
}

}  // namespace

std::string HfConfigJson(const model::ModelConfig& c, const std::string& torch_dtype) {
  const bool qwen = c.architecture == "Qwen2ForCausalLM";
  nlohmann::json j;
  j["architectures"] = {c.architecture};
  j["model_type"] = qwen ? "qwen2" : "llama";
  j["hidden_size"] = c.dim;
  j["intermediate_size"] = c.hidden_dim;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = c.n_kv_heads;
  j["head_dim"] = c.HeadDim();
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_seq_len;
  j["rope_theta"] = c.rope_theta;
  j["rms_norm_eps"] = c.norm_eps;
  j["tie_word_embeddings"] = c.tied_head;
  j["hidden_act"] = "silu";
  j["torch_dtype"] = torch_dtype;
  if (!qwen) {
    j["attention_bias"] = c.o_bias || c.qkv_bias;
    j["mlp_bias"] = c.mlp_bias;
  }
  switch (c.rope_scaling.type) {
    case model::RopeScalingType::kNone:
      j["rope_scaling"] = nullptr;
      break;
    case model::RopeScalingType::kLinear:
      j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", c.rope_scaling.factor}};
      break;
    case model::RopeScalingType::kLlama3:
      j["rope_scaling"] = {{"rope_type", "llama3"},
                           {"factor", c.rope_scaling.factor},
                           {"low_freq_factor", c.rope_scaling.low_freq_factor},
                           {"high_freq_factor", c.rope_scaling.high_freq_factor},
                           {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings}};
      break;
  }
  return j.dump(2) + "\n";
}

absl::StatusOr<AdapterSummary> DescribeAdapter(const std::filesystem::path& dir) {
  FEDFM_ASSIGN_OR_RETURN(Adapter adapter, LoadAdapter(dir));
  return Summarize(dir, adapter);
}

absl::StatusOr<AdapterSummary> ExportAdapter(const ExportRequest& request) {
  Adapter adapter;
  if (std::filesystem::is_directory(request.input)) {
    FEDFM_ASSIGN_OR_RETURN(adapter, LoadAdapter(request.input));
  } else {
    FEDFM_ASSIGN_OR_RETURN(protocols::Safetensors file, protocols::ReadSafetensors(request.input));
    TensorMap state;
    for (const auto& [name, t] : file.tensors) state.Set(name, t);
    AdapterConfig hyper;
    FEDFM_ASSIGN_OR_RETURN(adapter, AdapterFromState(state, hyper));
    adapter.config.lora_alpha = 2.0 * adapter.config.r;
  }
  if (request.alpha) {
    if (!(*request.alpha > 0)) return absl::InvalidArgumentError("alpha must be > 0");
    adapter.config.lora_alpha = *request.alpha;
  }
  if (request.dropout) {
    if (!(*request.dropout >= 0 && *request.dropout < 1)) return absl::InvalidArgumentError("dropout must be in [0, 1)");
    adapter.config.lora_dropout = *request.dropout;
  }
  if (request.rslora) adapter.config.use_rslora = *request.rslora;
  if (request.base_model) adapter.config.base_model_name_or_path = *request.base_model;
  FEDFM_RETURN_IF_ERROR(SaveAdapter(request.out, adapter));
  return Summarize(request.out, adapter);
}

absl::StatusOr<MergeResult> MergeAdapterIntoModel(const MergeRequest& request) {
  FEDFM_ASSIGN_OR_RETURN(model::CheckpointInfo info, model::ReadCheckpointInfo(request.model));
  FEDFM_ASSIGN_OR_RETURN(Adapter adapter, LoadAdapter(request.adapter));
  MergeResult result;
  result.out = request.out;
  result.base_format = model::CheckpointFormatName(info.format);
  result.dtype = request.dtype.empty() ? info.dtype : request.dtype;
  FEDFM_ASSIGN_OR_RETURN(torch::ScalarType out_dtype, StoredDType(result.dtype));
  FEDFM_ASSIGN_OR_RETURN(std::shared_ptr<const model::Model> base, model::LoadModel(request.model));
  TensorMap state = StateFromAdapter(adapter);
  result.dropped_head = state.Contains(kScoreHeadName);
  if (result.dropped_head) {
    TensorMap without;
    for (const auto& [name, t] : state) {
      if (name != kScoreHeadName) without.Set(name, t);
    }
    state = std::move(without);
  }
  for (const auto& [name, t] : adapter.tensors) {
    LoraTensorId id;
    if (ParseLoraTensorName(name, &id) && id.matrix == LoraMatrix::kA) ++result.merged_modules;
  }
  result.replaced_tensors = static_cast<int>(adapter.full_weights.size());
  TensorMap weights;
  try {
    const double scale = LoraScale(adapter.config.lora_alpha, adapter.config.r, adapter.config.use_rslora);
    FEDFM_ASSIGN_OR_RETURN(model::NamedTensors merged, MergeState(*base, state, scale));
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : merged) t = t.to(torch::kCPU, out_dtype).contiguous();
    FEDFM_ASSIGN_OR_RETURN(weights, model::FromTorchMap(merged));
  } catch (const std::exception& e) {
    return TorchError("merge failed", e);
  }
  std::error_code ec;
  std::filesystem::create_directories(request.out, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", request.out.string(), ": ", ec.message()));
  FEDFM_RETURN_IF_ERROR(protocols::WriteSafetensors(request.out / "model.safetensors", weights, {{"format", "pt"}}));
  result.files.push_back("model.safetensors");
  const std::string torch_dtype = result.dtype == "F32" ? "float32" : result.dtype == "BF16" ? "bfloat16" : "float16";
  if (info.format == model::CheckpointFormat::kHuggingFace) {
    const std::filesystem::path dir =
        std::filesystem::is_directory(info.path) ? info.path : info.path.parent_path();
    // The base's config.json, with the stored dtype updated.
    FEDFM_ASSIGN_OR_RETURN(std::string text, protocols::ReadFileToString(dir / "config.json"));
    nlohmann::json config = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat((dir / "config.json").string(), ": not a JSON object"));
    }
    if (config.contains("dtype")) config["dtype"] = torch_dtype;
    if (config.contains("torch_dtype") || !config.contains("dtype")) config["torch_dtype"] = torch_dtype;
    FEDFM_RETURN_IF_ERROR(protocols::WriteFileAtomic(request.out / "config.json", config.dump(2) + "\n"));
    result.files.push_back("config.json");
    for (const char* file : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                             "generation_config.json"}) {
      FEDFM_RETURN_IF_ERROR(CopyIfPresent(dir / file, request.out / file, &result.files));
    }
  } else {
    FEDFM_RETURN_IF_ERROR(protocols::WriteFileAtomic(request.out / "config.json", HfConfigJson(info.config, torch_dtype)));
    result.files.push_back("config.json");
  }
  return result;
}

absl::StatusOr<model::EvalResult> EvaluateTextWithAdapter(const model::EvalRequest& request,
                                                          const std::filesystem::path& adapter_dir) {
  FEDFM_ASSIGN_OR_RETURN(Adapter adapter, LoadAdapter(adapter_dir));
  StateForwardOptions options;
  options.alpha = adapter.config.lora_alpha;
  options.rslora = adapter.config.use_rslora;
  return model::EvaluateText(
      request, [&](const std::shared_ptr<const model::Model>& base,
                   model::ForwardOptions* forward) -> absl::StatusOr<std::shared_ptr<void>> {
        FEDFM_ASSIGN_OR_RETURN(std::unique_ptr<StateForward> state,
                               StateForward::Create(base, StateFromAdapter(adapter), {}, options));
        *forward = state->forward_options();
        forward->classification_head = nullptr;
        return std::shared_ptr<void>(std::move(state));
      });
}

}  // namespace fedfm::peft
