#include "model/loader.h"

#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "model/internal/checkpoint_format.h"
#include "model/torch_bridge.h"
#include "protocols/file_util.h"
#include "protocols/safetensors.h"
#include "protocols/status_macros.h"

namespace fedfm::model {
namespace {

absl::Status Prefixed(const std::string& prefix, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(prefix, ": ", status.message()));
}

// A copy of `t` in the model's dtype and device (never aliasing the mapping).
torch::Tensor Materialize(const torch::Tensor& t, const ModelOptions& options) {
  return t.to(options.device, options.dtype, /*non_blocking=*/false, /*copy=*/true);
}

absl::StatusOr<std::shared_ptr<const Model>> LoadLlama2c(const std::filesystem::path& path,
                                                         const ModelOptions& options) {
  const std::string file = path.string();
  FEDFM_ASSIGN_OR_RETURN(std::shared_ptr<const protocols::MappedFile> mapped, protocols::MappedFile::Open(path));
  std::span<const std::byte> bytes = mapped->bytes();
  FEDFM_ASSIGN_OR_RETURN(ModelConfig config, internal::ParseLlama2cHeader(bytes, file));
  FEDFM_ASSIGN_OR_RETURN(std::vector<internal::Llama2cTensor> layout,
                         internal::Llama2cLayout(config, static_cast<int64_t>(bytes.size()), file));
  NamedTensors weights;
  torch::NoGradGuard no_grad;
  for (const internal::Llama2cTensor& t : layout) {
    // Offsets are multiples of 4 from a page-aligned mapping: float-aligned.
    void* data = const_cast<std::byte*>(bytes.data() + t.offset);
    torch::Tensor view = torch::from_blob(data, t.shape, torch::kFloat);
    if (t.rope_heads > 0) view = PermuteRopeRowsToHalves(view, t.rope_heads);
    weights.emplace_back(t.name, Materialize(view, options));
  }
  auto model = Model::Create(config, std::move(weights), options);
  if (!model.ok()) return Prefixed(file, model.status());
  return model;
}

absl::StatusOr<std::shared_ptr<const Model>> LoadHuggingFace(const std::filesystem::path& dir,
                                                             const ModelOptions& options) {
  const std::filesystem::path config_path = dir / "config.json";
  FEDFM_ASSIGN_OR_RETURN(std::string text, protocols::ReadFileToString(config_path));
  FEDFM_ASSIGN_OR_RETURN(ModelConfig config, internal::ParseHfConfig(text, config_path.string()));
  FEDFM_ASSIGN_OR_RETURN(internal::HfWeightFiles files, internal::FindHfWeightFiles(dir));
  std::unordered_map<std::string, std::string> found_in;  // tensor -> file
  NamedTensors weights;
  torch::NoGradGuard no_grad;
  for (const std::filesystem::path& file : files.files) {
    FEDFM_ASSIGN_OR_RETURN(protocols::Safetensors st, protocols::ReadSafetensors(file));
    for (const auto& [name, host] : st.tensors) {
      // Old checkpoints store rotary tables as buffers; tied checkpoints may
      // repeat the embedding as lm_head.
      if (name.size() > 22 && name.ends_with(".rotary_emb.inv_freq")) continue;
      if (config.tied_head && name == "lm_head.weight") continue;
      if (host.dtype() != protocols::DType::kF32 && host.dtype() != protocols::DType::kBF16 &&
          host.dtype() != protocols::DType::kF16) {
        return absl::InvalidArgumentError(absl::StrCat(file.string(), ": tensor \"", name, "\" has dtype ",
                                                       protocols::DTypeName(host.dtype()),
                                                       "; expected F32, BF16 or F16"));
      }
      auto [it, inserted] = found_in.emplace(name, file.string());
      if (!inserted) {
        return absl::InvalidArgumentError(
            absl::StrCat(file.string(), ": tensor \"", name, "\" also appears in ", it->second));
      }
      weights.emplace_back(name, Materialize(ToTorch(host), options));
    }
  }
  for (const auto& [name, shard] : files.weight_map) {
    if (config.tied_head && name == "lm_head.weight") continue;
    auto it = found_in.find(name);
    if (it == found_in.end() || it->second != shard.string()) {
      return absl::InvalidArgumentError(absl::StrCat((dir / "model.safetensors.index.json").string(),
                                                     ": weight_map puts tensor \"", name, "\" in ", shard.string(),
                                                     " but that file does not hold it"));
    }
  }
  auto model = Model::Create(config, std::move(weights), options);
  if (!model.ok()) return Prefixed(dir.string(), model.status());
  return model;
}

}  // namespace

torch::Tensor PermuteRopeRowsToHalves(const torch::Tensor& weight, int64_t heads) {
  // [heads * hd, in...]: per head, rows (0, 2, 4, ..., 1, 3, 5, ...).
  std::vector<int64_t> split = {heads, weight.size(0) / heads / 2, 2};
  for (int64_t i = 1; i < weight.dim(); ++i) split.push_back(weight.size(i));
  return weight.reshape(split).transpose(1, 2).reshape(weight.sizes());
}

torch::Tensor PermuteRopeRowsFromHalves(const torch::Tensor& weight, int64_t heads) {
  std::vector<int64_t> split = {heads, 2, weight.size(0) / heads / 2};
  for (int64_t i = 1; i < weight.dim(); ++i) split.push_back(weight.size(i));
  return weight.reshape(split).transpose(1, 2).reshape(weight.sizes());
}

absl::StatusOr<std::shared_ptr<const Model>> LoadModel(const std::filesystem::path& path,
                                                       const ModelOptions& options) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path.string(), ": no such file or directory"));
  }
  try {
    if (std::filesystem::is_directory(path, ec)) return LoadHuggingFace(path, options);
    if (path.filename() == "config.json") return LoadHuggingFace(path.parent_path(), options);
    return LoadLlama2c(path, options);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(path.string(), ": ", e.what_without_backtrace()));
  }
}

absl::StatusOr<ModelOptions> ParseModelOptions(const std::string& dtype, const std::string& device) {
  ModelOptions options;
  if (dtype == "f32" || dtype == "fp32" || dtype == "float32") {
    options.dtype = torch::kFloat;
  } else if (dtype == "bf16" || dtype == "bfloat16") {
    options.dtype = torch::kBFloat16;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("dtype must be f32 or bf16, got \"", dtype, "\""));
  }
  if (device == "cpu") {
    options.device = torch::kCPU;
  } else if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available()) {
      return absl::FailedPreconditionError(
          absl::StrCat("device \"", device, "\": this LibTorch build or machine has no CUDA device"));
    }
    try {
      options.device = torch::Device(device);
    } catch (const c10::Error&) {
      return absl::InvalidArgumentError(absl::StrCat("bad device \"", device, "\""));
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat("device must be cpu or cuda[:N], got \"", device, "\""));
  }
  return options;
}

absl::StatusOr<ModelOptions> ModelOptionsFromConfig(const protocols::ModelOptions& m) {
  ModelOptions options;
  options.dtype = m.dtype == protocols::ModelDType::kBF16 ? torch::kBFloat16 : torch::kFloat;
  if (m.device == protocols::DeviceKind::kCuda) {
    if (!torch::cuda::is_available()) {
      return absl::FailedPreconditionError("model.device = \"cuda\", but this LibTorch build or machine has no CUDA");
    }
    options.device = torch::Device(torch::kCUDA, 0);
  }
  return options;
}

}  // namespace fedfm::model
