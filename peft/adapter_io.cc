#include "peft/adapter_io.h"

#include <algorithm>
#include <cmath>
#include <system_error>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "model/config.h"
#include "peft/state.h"
#include "protocols/file_util.h"
#include "protocols/optimizer_state.h"
#include "protocols/safetensors.h"
#include "protocols/status_macros.h"

namespace fedfm::peft {
namespace {

using nlohmann::json;
using protocols::TensorMap;

const std::map<std::string, std::string> kSafetensorsMetadata = {{"format", "pt"}};

absl::Status Bad(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
}

void ReplaceAll(std::string& s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
}

// PEFT's in-memory names (with the adapter name) -> its saved names.
std::string NormalizeTensorName(std::string name) {
  ReplaceAll(name, ".modules_to_save.default.", ".");
  ReplaceAll(name, ".modules_to_save.", ".");
  ReplaceAll(name, ".lora_A.default.", ".lora_A.");
  ReplaceAll(name, ".lora_B.default.", ".lora_B.");
  return name;
}

// Every LoRA tensor's rank; r_max when they agree, else an error.
absl::StatusOr<int> TensorsRank(const TensorMap& tensors, const std::string& source) {
  int rank = 0;
  for (const auto& [name, t] : tensors) {
    LoraTensorId id;
    if (!ParseLoraTensorName(name, &id)) continue;
    if (t.shape().size() != 2) return Bad(source, absl::StrCat("LoRA tensor \"", name, "\" is not 2-D"));
    const int r = static_cast<int>(t.shape()[id.matrix == LoraMatrix::kA ? 0 : 1]);
    if (rank != 0 && r != rank) {
      return absl::UnimplementedError(absl::StrCat(source, ": LoRA tensor \"", name, "\" has rank ", r,
                                                   " but others ", rank, "; per-module ranks are not supported"));
    }
    rank = r;
  }
  return rank;
}

std::vector<std::string> TargetsOf(const TensorMap& tensors) {
  std::vector<bool> present(model::kNumProjections, false);
  for (const auto& [name, t] : tensors) {
    LoraTensorId id;
    if (ParseLoraTensorName(name, &id)) present[static_cast<int>(id.projection)] = true;
  }
  std::vector<std::string> targets;
  for (model::Projection p : model::kAllProjections) {
    if (present[static_cast<int>(p)]) targets.push_back(model::ProjectionName(p));
  }
  return targets;
}

json NumberJson(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15) return json(static_cast<int64_t>(v));
  return json(v);
}

absl::StatusOr<TensorMap> ReadTensorsF32(const std::filesystem::path& path) {
  FEDFM_ASSIGN_OR_RETURN(protocols::Safetensors file, protocols::ReadSafetensors(path));
  TensorMap out;
  for (const auto& [name, t] : file.tensors) {
    if (!protocols::IsFloating(t.dtype())) {
      return Bad(path.string(), absl::StrCat("tensor \"", name, "\" has non-float dtype ", protocols::DTypeName(t.dtype())));
    }
    const std::string normalized = NormalizeTensorName(name);
    absl::Status inserted = out.Insert(normalized, t.dtype() == protocols::DType::kF32 ? t : t.To(protocols::DType::kF32));
    if (!inserted.ok()) return Bad(path.string(), absl::StrCat("tensor \"", normalized, "\" appears twice"));
  }
  return out;
}

}  // namespace

std::string AdapterConfigJson(const AdapterConfig& config) {
  json j;
  j["alpha_pattern"] = json::object();
  j["auto_mapping"] = nullptr;
  j["base_model_name_or_path"] =
      config.base_model_name_or_path.empty() ? json(nullptr) : json(config.base_model_name_or_path);
  j["bias"] = "none";
  j["fan_in_fan_out"] = false;
  j["inference_mode"] = true;
  j["init_lora_weights"] = true;
  j["layer_replication"] = nullptr;
  j["layers_pattern"] = nullptr;
  j["layers_to_transform"] = nullptr;
  j["loftq_config"] = json::object();
  j["lora_alpha"] = NumberJson(config.lora_alpha);
  j["lora_dropout"] = config.lora_dropout;
  j["megatron_config"] = nullptr;
  j["megatron_core"] = "megatron.core";
  j["modules_to_save"] = config.modules_to_save.empty() ? json(nullptr) : json(config.modules_to_save);
  j["peft_type"] = "LORA";
  j["r"] = config.r;
  j["rank_pattern"] = json::object();
  j["revision"] = nullptr;
  j["target_modules"] =
      config.target_modules_regex.empty() ? json(config.target_modules) : json(config.target_modules_regex);
  j["task_type"] = config.task_type;
  j["use_dora"] = false;
  j["use_rslora"] = config.use_rslora;
  return j.dump(2) + "\n";
}

absl::StatusOr<AdapterConfig> ParseAdapterConfigJson(const std::string& text, const std::string& source) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Bad(source, "not a JSON object");
  auto key = [&](const char* k) -> const json* {
    auto it = j.find(k);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  };
  AdapterConfig c;
  if (const json* v = key("peft_type"); v != nullptr && (!v->is_string() || v->get<std::string>() != "LORA")) {
    return absl::UnimplementedError(absl::StrCat(source, ": peft_type ", v->dump(), " is not supported (only \"LORA\")"));
  }
  const json* r = key("r");
  if (r == nullptr || !r->is_number_integer() || r->get<int64_t>() < 1) {
    return Bad(source, absl::StrCat("key \"r\" must be a positive integer, got ", r ? r->dump() : "nothing"));
  }
  c.r = static_cast<int>(r->get<int64_t>());
  const json* alpha = key("lora_alpha");
  if (alpha == nullptr || !alpha->is_number() || !(alpha->get<double>() > 0)) {
    return Bad(source, absl::StrCat("key \"lora_alpha\" must be a positive number, got ", alpha ? alpha->dump() : "nothing"));
  }
  c.lora_alpha = alpha->get<double>();
  if (const json* v = key("lora_dropout")) {
    if (!v->is_number() || v->get<double>() < 0 || v->get<double>() >= 1) {
      return Bad(source, absl::StrCat("key \"lora_dropout\" must be in [0, 1), got ", v->dump()));
    }
    c.lora_dropout = v->get<double>();
  }
  if (const json* v = key("use_rslora")) {
    if (!v->is_boolean()) return Bad(source, "key \"use_rslora\" must be true or false");
    c.use_rslora = v->get<bool>();
  }
  auto refuse_true = [&](const char* k) -> absl::Status {
    const json* v = key(k);
    if (v != nullptr && v->is_boolean() && v->get<bool>()) {
      return absl::UnimplementedError(absl::StrCat(source, ": \"", k, "\": true is not supported"));
    }
    return absl::OkStatus();
  };
  for (const char* k : {"use_dora", "fan_in_fan_out", "lora_bias", "use_qalora", "use_bdlora"}) {
    FEDFM_RETURN_IF_ERROR(refuse_true(k));
  }
  // Extras that change the model beyond the projections' low-rank updates.
  for (const char* k : {"trainable_token_indices", "alora_invocation_tokens", "target_parameters"}) {
    if (const json* v = key(k); v != nullptr && !(v->is_array() && v->empty()) && !(v->is_object() && v->empty())) {
      return absl::UnimplementedError(absl::StrCat(source, ": \"", k, "\": ", v->dump(), " is not supported"));
    }
  }
  if (const json* v = key("bias"); v != nullptr && (!v->is_string() || v->get<std::string>() != "none")) {
    return absl::UnimplementedError(absl::StrCat(source, ": \"bias\": ", v->dump(), " is not supported (only \"none\")"));
  }
  for (const char* pattern : {"rank_pattern", "alpha_pattern"}) {
    const json* v = key(pattern);
    if (v != nullptr && !(v->is_object() && v->empty())) {
      return absl::UnimplementedError(
          absl::StrCat(source, ": \"", pattern, "\" ", v->dump(), ": per-module ranks and alphas are not supported"));
    }
  }
  if (const json* v = key("target_modules")) {
    if (v->is_string()) {
      if (v->get<std::string>() == "all-linear") {
        for (model::Projection p : model::kAllProjections) c.target_modules.push_back(model::ProjectionName(p));
      } else {
        c.target_modules_regex = v->get<std::string>();
      }
    } else if (v->is_array()) {
      for (const json& m : *v) {
        if (!m.is_string()) return Bad(source, "key \"target_modules\" must hold strings");
        c.target_modules.push_back(m.get<std::string>());
      }
      std::sort(c.target_modules.begin(), c.target_modules.end());  // PEFT saves a set
    } else {
      return Bad(source, "key \"target_modules\" must be a list of module names or a regex string");
    }
  }
  if (const json* v = key("base_model_name_or_path")) {
    if (!v->is_string()) return Bad(source, "key \"base_model_name_or_path\" must be a string");
    c.base_model_name_or_path = v->get<std::string>();
  }
  if (const json* v = key("task_type")) {
    if (!v->is_string()) return Bad(source, "key \"task_type\" must be a string");
    c.task_type = v->get<std::string>();
  }
  if (const json* v = key("modules_to_save")) {
    if (!v->is_array()) return Bad(source, "key \"modules_to_save\" must be a list");
    for (const json& m : *v) {
      if (!m.is_string()) return Bad(source, "key \"modules_to_save\" must hold strings");
      c.modules_to_save.push_back(m.get<std::string>());
    }
  }
  return c;
}

absl::Status SaveAdapter(const std::filesystem::path& dir, const Adapter& adapter) {
  const std::string source = dir.string();
  for (const auto& [name, t] : adapter.tensors) {
    LoraTensorId id;
    if (!ParseLoraTensorName(name, &id) && name != kScoreHeadName) {
      return Bad(source, absl::StrCat("tensor \"", name, "\" is neither a LoRA tensor nor the head ", kScoreHeadName));
    }
  }
  for (const auto& [name, t] : adapter.full_weights) {
    LoraTensorId id;
    if (ParseLoraTensorName(name, &id) || BlockOfTensor(name) < 0) {
      return Bad(source, absl::StrCat("full weight \"", name, "\" is not a block weight"));
    }
  }
  FEDFM_ASSIGN_OR_RETURN(int rank, TensorsRank(adapter.tensors, source));
  if (rank != 0 && rank != adapter.config.r) {
    return Bad(source, absl::StrCat("config r = ", adapter.config.r, " but the tensors have rank ", rank));
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", source, ": ", ec.message()));
  FEDFM_RETURN_IF_ERROR(protocols::WriteSafetensors(dir / kAdapterWeightsFile, adapter.tensors, kSafetensorsMetadata));
  const std::filesystem::path blocks = dir / kPartialBlocksFile;
  if (!adapter.full_weights.empty()) {
    FEDFM_RETURN_IF_ERROR(protocols::WriteSafetensors(blocks, adapter.full_weights, kSafetensorsMetadata));
  } else {
    std::filesystem::remove(blocks, ec);  // a stale file from an earlier save would be applied by merge
  }
  return protocols::WriteFileAtomic(dir / kAdapterConfigFile, AdapterConfigJson(adapter.config));
}

absl::StatusOr<Adapter> LoadAdapter(const std::filesystem::path& dir) {
  const std::filesystem::path config_path = dir / kAdapterConfigFile;
  const std::filesystem::path weights_path = dir / kAdapterWeightsFile;
  if (!std::filesystem::exists(config_path)) {
    return absl::NotFoundError(absl::StrCat("no ", kAdapterConfigFile, " in ", dir.string()));
  }
  if (!std::filesystem::exists(weights_path)) {
    if (std::filesystem::exists(dir / "adapter_model.bin")) {
      return absl::UnimplementedError(absl::StrCat(dir.string(),
                                                   ": adapter_model.bin (pickle) is not read; save the adapter with "
                                                   "safe_serialization=True (adapter_model.safetensors)"));
    }
    return absl::NotFoundError(absl::StrCat("no ", kAdapterWeightsFile, " in ", dir.string()));
  }
  FEDFM_ASSIGN_OR_RETURN(std::string text, protocols::ReadFileToString(config_path));
  Adapter adapter;
  FEDFM_ASSIGN_OR_RETURN(adapter.config, ParseAdapterConfigJson(text, config_path.string()));
  FEDFM_ASSIGN_OR_RETURN(adapter.tensors, ReadTensorsF32(weights_path));
  for (const auto& [name, t] : adapter.tensors) {
    LoraTensorId id;
    if (!ParseLoraTensorName(name, &id) && name != kScoreHeadName) {
      return Bad(weights_path.string(),
                 absl::StrCat("unexpected tensor \"", name, "\" (expected LoRA tensors of Llama-family projections ",
                              "and optionally ", kScoreHeadName, ")"));
    }
  }
  FEDFM_ASSIGN_OR_RETURN(int rank, TensorsRank(adapter.tensors, weights_path.string()));
  if (rank != 0 && rank != adapter.config.r) {
    return Bad(weights_path.string(),
               absl::StrCat("tensors have rank ", rank, " but adapter_config.json says r = ", adapter.config.r));
  }
  if (adapter.config.target_modules.empty() || !adapter.config.target_modules_regex.empty()) {
    adapter.config.target_modules = TargetsOf(adapter.tensors);
  }
  const std::filesystem::path blocks = dir / kPartialBlocksFile;
  if (std::filesystem::exists(blocks)) {
    FEDFM_ASSIGN_OR_RETURN(adapter.full_weights, ReadTensorsF32(blocks));
    for (const auto& [name, t] : adapter.full_weights) {
      if (BlockOfTensor(name) < 0) return Bad(blocks.string(), absl::StrCat("tensor \"", name, "\" is not a block weight"));
    }
  }
  return adapter;
}

absl::StatusOr<Adapter> AdapterFromState(const TensorMap& state, const AdapterConfig& hyper) {
  Adapter adapter;
  adapter.config = hyper;
  adapter.config.modules_to_save.clear();
  for (const auto& [name, t] : state) {
    if (protocols::IsOptimizerState(name)) continue;  // training state, not part of an adapter
    LoraTensorId id;
    const protocols::Tensor value = t.dtype() == protocols::DType::kF32 ? t : t.To(protocols::DType::kF32);
    if (ParseLoraTensorName(name, &id) || name == kScoreHeadName) {
      FEDFM_RETURN_IF_ERROR(adapter.tensors.Insert(name, value));
    } else if (BlockOfTensor(name) >= 0) {
      FEDFM_RETURN_IF_ERROR(adapter.full_weights.Insert(name, value));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("state tensor \"", name, "\" has no place in an adapter"));
    }
  }
  FEDFM_ASSIGN_OR_RETURN(int rank, TensorsRank(adapter.tensors, "state"));
  if (rank > 0) adapter.config.r = rank;
  if (adapter.config.r < 1) adapter.config.r = 1;
  adapter.config.target_modules = TargetsOf(adapter.tensors);
  adapter.config.target_modules_regex.clear();
  if (adapter.tensors.Contains(kScoreHeadName)) {
    adapter.config.task_type = "SEQ_CLS";
    adapter.config.modules_to_save = {"score"};
  } else if (adapter.config.task_type.empty() || adapter.config.task_type == "SEQ_CLS") {
    adapter.config.task_type = "CAUSAL_LM";
  }
  return adapter;
}

absl::StatusOr<Adapter> SaveStateAsAdapter(const std::filesystem::path& dir, const TensorMap& state,
                                           const LoraSpec& spec, const std::string& base_model) {
  AdapterConfig hyper;
  hyper.lora_alpha = spec.alpha;
  hyper.lora_dropout = spec.dropout;
  hyper.use_rslora = spec.rslora;
  hyper.r = spec.rank;
  hyper.base_model_name_or_path = base_model;
  FEDFM_ASSIGN_OR_RETURN(Adapter adapter, AdapterFromState(state, hyper));
  FEDFM_RETURN_IF_ERROR(SaveAdapter(dir, adapter));
  return adapter;
}

TensorMap StateFromAdapter(const Adapter& adapter) {
  TensorMap state;
  for (const auto& [name, t] : adapter.tensors) {
    if (name != kScoreHeadName) state.Set(name, t);
  }
  for (const auto& [name, t] : adapter.full_weights) state.Set(name, t);
  if (const protocols::Tensor* head = adapter.tensors.Find(kScoreHeadName)) state.Set(kScoreHeadName, *head);
  return state;
}

}  // namespace fedfm::peft
