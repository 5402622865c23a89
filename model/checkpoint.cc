#include "model/checkpoint.h"

#include <cstring>
#include <fstream>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "model/internal/checkpoint_format.h"
#include "nlohmann/json.hpp"
#include "protocols/file_util.h"
#include "protocols/safetensors.h"
#include "protocols/status_macros.h"

namespace fedfm::model {
namespace internal {
namespace {

using nlohmann::json;

absl::Status Bad(const std::string& file, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": ", what));
}

// A positive integer key (or `fallback` when absent and one is given).
absl::StatusOr<int64_t> IntKey(const json& j, const char* key, const std::string& file,
                               std::optional<int64_t> fallback = std::nullopt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback) return *fallback;
    return Bad(file, absl::StrCat("missing key \"", key, "\""));
  }
  if (!it->is_number_integer() || it->get<int64_t>() <= 0) {
    return Bad(file, absl::StrCat("key \"", key, "\" must be a positive integer, got ", it->dump()));
  }
  return it->get<int64_t>();
}

absl::StatusOr<double> NumberKey(const json& j, const char* key, const std::string& file, double fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number()) return Bad(file, absl::StrCat("key \"", key, "\" must be a number, got ", it->dump()));
  return it->get<double>();
}

absl::StatusOr<bool> BoolKey(const json& j, const char* key, const std::string& file, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return Bad(file, absl::StrCat("key \"", key, "\" must be true or false, got ", it->dump()));
  return it->get<bool>();
}

// Rotary settings, from transformers 5's "rope_parameters" object or the
// older top-level "rope_theta" and "rope_scaling" keys.
absl::Status ParseRope(const json& j, const std::string& file, ModelConfig* config) {
  const json* params = nullptr;
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_object()) return Bad(file, absl::StrCat("key \"", key, "\" must be an object or null"));
    params = &*it;
  }
  FEDFM_ASSIGN_OR_RETURN(config->rope_theta, NumberKey(j, "rope_theta", file, 10000.0));
  if (params == nullptr) return absl::OkStatus();
  if (!j.contains("rope_theta")) {
    FEDFM_ASSIGN_OR_RETURN(config->rope_theta, NumberKey(*params, "rope_theta", file, 10000.0));
  }
  std::string type;
  for (const char* key : {"rope_type", "type"}) {
    auto t = params->find(key);
    if (t != params->end() && t->is_string()) {
      type = t->get<std::string>();
      break;
    }
  }
  RopeScaling& scaling = config->rope_scaling;
  if (type.empty() || type == "default") {
    for (const auto& [key, value] : params->items()) {
      if (value.is_object()) {
        return absl::UnimplementedError(
            absl::StrCat(file, ": per-layer-type rotary parameters (\"", key, "\") are not supported"));
      }
    }
    return absl::OkStatus();
  }
  if (type == "linear") {
    scaling.type = RopeScalingType::kLinear;
  } else if (type == "llama3") {
    scaling.type = RopeScalingType::kLlama3;
    FEDFM_ASSIGN_OR_RETURN(scaling.low_freq_factor, NumberKey(*params, "low_freq_factor", file, 1.0));
    FEDFM_ASSIGN_OR_RETURN(scaling.high_freq_factor, NumberKey(*params, "high_freq_factor", file, 4.0));
    FEDFM_ASSIGN_OR_RETURN(scaling.original_max_position_embeddings,
                           IntKey(*params, "original_max_position_embeddings", file, 8192));
  } else {
    return absl::UnimplementedError(
        absl::StrCat(file, ": rope type \"", type, "\" is not supported (default, linear, llama3)"));
  }
  FEDFM_ASSIGN_OR_RETURN(scaling.factor, NumberKey(*params, "factor", file, 1.0));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ParseLlama2cHeader(std::span<const std::byte> bytes, const std::string& file) {
  if (bytes.size() < static_cast<size_t>(kLlama2cHeaderBytes)) {
    return Bad(file, absl::StrCat("truncated: ", bytes.size(), " bytes, shorter than the ", kLlama2cHeaderBytes,
                                  "-byte llama2.c header"));
  }
  int32_t h[7];
  std::memcpy(h, bytes.data(), sizeof(h));
  if (static_cast<uint32_t>(h[0]) == 0x616b3432u) {
    return Bad(file, "a llama2.c version-1/2 export (magic \"ak42\"); only the legacy version-0 format is supported");
  }
  struct Field {
    const char* name;
    int64_t value;
    int64_t max;
  };
  const Field fields[] = {{"dim", h[0], 1 << 16},        {"hidden_dim", h[1], 1 << 20},
                          {"n_layers", h[2], 1024},      {"n_heads", h[3], 1 << 12},
                          {"n_kv_heads", h[4], 1 << 12}, {"vocab_size", std::abs(int64_t{h[5]}), 1 << 24},
                          {"seq_len", h[6], 1 << 24}};
  for (const Field& f : fields) {
    if (f.value <= 0 || f.value > f.max) {
      return Bad(file, absl::StrCat("header field ", f.name, " = ", f.value, " is outside 1..", f.max,
                                    "; not a llama2.c checkpoint?"));
    }
  }
  ModelConfig config;
  config.architecture = "LlamaForCausalLM";
  config.dim = h[0];
  config.hidden_dim = h[1];
  config.n_layers = h[2];
  config.n_heads = h[3];
  config.n_kv_heads = h[4];
  config.vocab_size = std::abs(int64_t{h[5]});
  config.tied_head = h[5] > 0;
  config.max_seq_len = h[6];
  config.rope_theta = 10000.0;
  config.norm_eps = 1e-5;
  absl::Status valid = config.Validate();
  if (!valid.ok()) return Bad(file, absl::StrCat("header: ", valid.message()));
  return config;
}

absl::StatusOr<std::vector<Llama2cTensor>> Llama2cLayout(const ModelConfig& c, int64_t file_size,
                                                         const std::string& file) {
  const int64_t d = c.dim, f = c.hidden_dim, hd = c.HeadDim();
  const int64_t q_rows = c.n_heads * hd, kv_rows = c.n_kv_heads * hd;
  std::vector<Llama2cTensor> out;
  int64_t offset = kLlama2cHeaderBytes;
  auto span_fits = [&](const std::string& what, int64_t bytes) -> absl::Status {
    if (offset + bytes > file_size) {
      return Bad(file, absl::StrCat("truncated: ", what, " needs bytes [", offset, ", ", offset + bytes,
                                    ") but the file has ", file_size, " bytes"));
    }
    return absl::OkStatus();
  };
  auto add = [&](std::string name, std::vector<int64_t> shape, int64_t rope_heads) -> absl::Status {
    int64_t numel = 1;
    for (int64_t s : shape) numel *= s;
    FEDFM_RETURN_IF_ERROR(span_fits(absl::StrCat("tensor \"", name, "\""), numel * 4));
    out.push_back({std::move(name), std::move(shape), offset, rope_heads});
    offset += numel * 4;
    return absl::OkStatus();
  };
  auto per_layer = [&](const std::string& suffix, std::vector<int64_t> shape, int64_t rope_heads) -> absl::Status {
    for (int64_t layer = 0; layer < c.n_layers; ++layer) {
      FEDFM_RETURN_IF_ERROR(add(absl::StrCat("model.layers.", layer, ".", suffix), shape, rope_heads));
    }
    return absl::OkStatus();
  };
  FEDFM_RETURN_IF_ERROR(add("model.embed_tokens.weight", {c.vocab_size, d}, 0));
  FEDFM_RETURN_IF_ERROR(per_layer("input_layernorm.weight", {d}, 0));
  FEDFM_RETURN_IF_ERROR(per_layer("self_attn.q_proj.weight", {q_rows, d}, c.n_heads));
  FEDFM_RETURN_IF_ERROR(per_layer("self_attn.k_proj.weight", {kv_rows, d}, c.n_kv_heads));
  FEDFM_RETURN_IF_ERROR(per_layer("self_attn.v_proj.weight", {kv_rows, d}, 0));
  FEDFM_RETURN_IF_ERROR(per_layer("self_attn.o_proj.weight", {d, q_rows}, 0));
  FEDFM_RETURN_IF_ERROR(per_layer("post_attention_layernorm.weight", {d}, 0));
  FEDFM_RETURN_IF_ERROR(per_layer("mlp.gate_proj.weight", {f, d}, 0));  // w1
  FEDFM_RETURN_IF_ERROR(per_layer("mlp.down_proj.weight", {d, f}, 0));  // w2
  FEDFM_RETURN_IF_ERROR(per_layer("mlp.up_proj.weight", {f, d}, 0));    // w3
  FEDFM_RETURN_IF_ERROR(add("model.norm.weight", {d}, 0));
  // freq_cis_real and freq_cis_imag: recomputed at load, skipped here.
  const int64_t table_bytes = 2 * c.max_seq_len * (hd / 2) * 4;
  FEDFM_RETURN_IF_ERROR(span_fits("the RoPE tables (freq_cis_real, freq_cis_imag)", table_bytes));
  offset += table_bytes;
  if (!c.tied_head) FEDFM_RETURN_IF_ERROR(add("lm_head.weight", {c.vocab_size, d}, 0));
  if (offset != file_size) {
    return Bad(file, absl::StrCat(file_size - offset, " unexpected bytes after the last tensor (which ends at offset ",
                                  offset, "); the header does not describe this file"));
  }
  return out;
}

absl::StatusOr<ModelConfig> ParseHfConfig(const std::string& json_text, const std::string& file) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad(file, "not valid JSON");
  if (!j.is_object()) return Bad(file, "not a JSON object");
  std::string architecture;
  auto arch = j.find("architectures");
  if (arch != j.end() && arch->is_array() && !arch->empty() && (*arch)[0].is_string()) {
    architecture = (*arch)[0].get<std::string>();
  } else if (j.contains("model_type") && j["model_type"].is_string()) {
    const std::string type = j["model_type"].get<std::string>();
    architecture = type == "llama" ? "LlamaForCausalLM" : type == "qwen2" ? "Qwen2ForCausalLM" : type;
  }
  const bool llama = architecture == "LlamaForCausalLM";
  const bool qwen2 = architecture == "Qwen2ForCausalLM";
  if (!llama && !qwen2) {
    return absl::UnimplementedError(absl::StrCat(file, ": architecture \"", architecture,
                                                 "\" is not supported (LlamaForCausalLM, Qwen2ForCausalLM)"));
  }
  auto act = j.find("hidden_act");
  if (act != j.end() && !(act->is_string() && act->get<std::string>() == "silu")) {
    return absl::UnimplementedError(absl::StrCat(file, ": hidden_act ", act->dump(), " is not supported (silu)"));
  }
  ModelConfig c;
  c.architecture = architecture;
  FEDFM_ASSIGN_OR_RETURN(c.dim, IntKey(j, "hidden_size", file));
  FEDFM_ASSIGN_OR_RETURN(c.hidden_dim, IntKey(j, "intermediate_size", file));
  FEDFM_ASSIGN_OR_RETURN(c.n_layers, IntKey(j, "num_hidden_layers", file));
  FEDFM_ASSIGN_OR_RETURN(c.n_heads, IntKey(j, "num_attention_heads", file));
  FEDFM_ASSIGN_OR_RETURN(c.n_kv_heads, IntKey(j, "num_key_value_heads", file, c.n_heads));
  FEDFM_ASSIGN_OR_RETURN(c.vocab_size, IntKey(j, "vocab_size", file));
  FEDFM_ASSIGN_OR_RETURN(c.max_seq_len, IntKey(j, "max_position_embeddings", file, llama ? 2048 : 32768));
  FEDFM_ASSIGN_OR_RETURN(c.head_dim, IntKey(j, "head_dim", file, 0));
  if (c.head_dim * c.n_heads == c.dim) c.head_dim = 0;  // the default, spelled out
  FEDFM_ASSIGN_OR_RETURN(c.norm_eps, NumberKey(j, "rms_norm_eps", file, 1e-6));
  FEDFM_ASSIGN_OR_RETURN(bool tied, BoolKey(j, "tie_word_embeddings", file, false));
  c.tied_head = tied;
  if (llama) {
    FEDFM_ASSIGN_OR_RETURN(bool attention_bias, BoolKey(j, "attention_bias", file, false));
    FEDFM_ASSIGN_OR_RETURN(c.mlp_bias, BoolKey(j, "mlp_bias", file, false));
    c.qkv_bias = attention_bias;
    c.o_bias = attention_bias;
  } else {
    c.qkv_bias = true;
    FEDFM_ASSIGN_OR_RETURN(bool sliding, BoolKey(j, "use_sliding_window", file, false));
    if (sliding) return absl::UnimplementedError(absl::StrCat(file, ": use_sliding_window = true is not supported"));
  }
  FEDFM_RETURN_IF_ERROR(ParseRope(j, file, &c));
  auto layer_types = j.find("layer_types");
  if (layer_types != j.end() && layer_types->is_array()) {
    for (const json& type : *layer_types) {
      if (!(type.is_string() && type.get<std::string>() == "full_attention")) {
        return absl::UnimplementedError(
            absl::StrCat(file, ": layer type ", type.dump(), " is not supported (full_attention)"));
      }
    }
  }
  c.rope_style = RopeStyle::kHalves;
  absl::Status valid = c.Validate();
  if (!valid.ok()) return Bad(file, std::string(valid.message()));
  return c;
}

absl::StatusOr<HfWeightFiles> FindHfWeightFiles(const std::filesystem::path& dir) {
  HfWeightFiles out;
  const std::filesystem::path index = dir / "model.safetensors.index.json";
  const std::filesystem::path single = dir / "model.safetensors";
  std::error_code ec;
  if (std::filesystem::exists(index, ec)) {
    FEDFM_ASSIGN_OR_RETURN(std::string text, protocols::ReadFileToString(index));
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return Bad(index.string(), "not a valid JSON object");
    auto map = j.find("weight_map");
    if (map == j.end() || !map->is_object() || map->empty()) {
      return Bad(index.string(), "missing or empty \"weight_map\" object");
    }
    std::set<std::string> seen;
    for (const auto& [name, file] : map->items()) {
      if (!file.is_string()) return Bad(index.string(), absl::StrCat("weight_map[\"", name, "\"] is not a string"));
      const std::string shard = file.get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "..") {
        return Bad(index.string(), absl::StrCat("weight_map[\"", name, "\"] names a file outside the directory: \"",
                                                shard, "\""));
      }
      out.weight_map.emplace_back(name, dir / shard);
      if (seen.insert(shard).second) {
        if (!std::filesystem::exists(dir / shard, ec)) {
          return absl::NotFoundError(
              absl::StrCat(index.string(), ": shard \"", shard, "\" (holding \"", name, "\") does not exist"));
        }
        out.files.push_back(dir / shard);
      }
    }
    return out;
  }
  if (std::filesystem::exists(single, ec)) {
    out.files.push_back(single);
    return out;
  }
  return absl::NotFoundError(
      absl::StrCat(dir.string(), ": no model.safetensors or model.safetensors.index.json in this directory"));
}

}  // namespace internal

const char* CheckpointFormatName(CheckpointFormat format) {
  return format == CheckpointFormat::kLlama2c ? "llama2c" : "huggingface";
}

absl::StatusOr<CheckpointInfo> ReadCheckpointInfo(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path.string(), ": no such file or directory"));
  }
  CheckpointInfo info;
  if (std::filesystem::is_directory(path, ec) || path.filename() == "config.json") {
    info.format = CheckpointFormat::kHuggingFace;
    info.path = std::filesystem::is_directory(path, ec) ? path : path.parent_path();
    const std::filesystem::path config_path = info.path / "config.json";
    FEDFM_ASSIGN_OR_RETURN(std::string text, protocols::ReadFileToString(config_path));
    FEDFM_ASSIGN_OR_RETURN(info.config, internal::ParseHfConfig(text, config_path.string()));
    FEDFM_ASSIGN_OR_RETURN(internal::HfWeightFiles files, internal::FindHfWeightFiles(info.path));
    info.weight_files = files.files;
    // The stored precision: that of the token embedding where the first file
    // holds it, else of the first file's first tensor.
    FEDFM_ASSIGN_OR_RETURN(protocols::Safetensors first, protocols::ReadSafetensors(info.weight_files.front()));
    const protocols::Tensor* embed = first.tensors.Find("model.embed_tokens.weight");
    if (embed == nullptr && !first.tensors.empty()) embed = &first.tensors.begin()->second;
    info.dtype = embed != nullptr ? protocols::DTypeName(embed->dtype()) : "F32";
    return info;
  }
  info.format = CheckpointFormat::kLlama2c;
  info.path = path;
  info.dtype = "F32";
  info.weight_files = {path};
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot open"));
  std::byte header[internal::kLlama2cHeaderBytes];
  in.read(reinterpret_cast<char*>(header), sizeof(header));
  const auto got = static_cast<size_t>(in.gcount());
  FEDFM_ASSIGN_OR_RETURN(info.config, internal::ParseLlama2cHeader(std::span(header, got), path.string()));
  const auto size = static_cast<int64_t>(std::filesystem::file_size(path, ec));
  FEDFM_RETURN_IF_ERROR(internal::Llama2cLayout(info.config, size, path.string()).status());
  return info;
}

}  // namespace fedfm::model
