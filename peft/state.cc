#include "peft/state.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

#include "absl/strings/str_cat.h"
#include "model/dataset_rng.h"
#include "protocols/check.h"
#include "protocols/optimizer_state.h"

namespace fedfm::peft {
namespace {

using protocols::Coverage;
using protocols::Method;
using protocols::TensorCoverage;
using protocols::TensorMap;

const char* MatrixName(LoraMatrix m) { return m == LoraMatrix::kA ? "lora_A" : "lora_B"; }

// A 64-bit FNV-1a hash of a name: the purpose of its random stream.
uint64_t NameHash(const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

bool ParseInt(const std::string& s, size_t* pos, int* value) {
  size_t i = *pos;
  int64_t v = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9' && v < (int64_t{1} << 30)) v = v * 10 + (s[i++] - '0');
  if (i == *pos) return false;
  *value = static_cast<int>(v);
  *pos = i;
  return true;
}

bool Consume(const std::string& s, size_t* pos, const std::string& token) {
  if (s.compare(*pos, token.size(), token) != 0) return false;
  *pos += token.size();
  return true;
}

}  // namespace

std::string LoraTensorName(int layer, model::Projection projection, LoraMatrix matrix) {
  return absl::StrCat(kPeftPrefix, model::ProjectionModulePath(layer, projection), ".", MatrixName(matrix), ".weight");
}

bool ParseLoraTensorName(const std::string& name, LoraTensorId* id) {
  size_t pos = 0;
  int layer = 0;
  if (!Consume(name, &pos, std::string(kPeftPrefix) + "model.layers.") || !ParseInt(name, &pos, &layer) ||
      !Consume(name, &pos, ".")) {
    return false;
  }
  for (model::Projection p : model::kAllProjections) {
    for (LoraMatrix m : {LoraMatrix::kA, LoraMatrix::kB}) {
      if (name == LoraTensorName(layer, p, m)) {
        *id = LoraTensorId{layer, p, m};
        return true;
      }
    }
  }
  return false;
}

int BlockOfTensor(const std::string& name) {
  size_t at = 0;
  while ((at = name.find("layers.", at)) != std::string::npos) {
    size_t pos = at + 7;
    int layer = 0;
    if ((at == 0 || name[at - 1] == '.') && ParseInt(name, &pos, &layer) && pos < name.size() && name[pos] == '.') {
      return layer;
    }
    at += 7;
  }
  return -1;
}

std::vector<std::string> BlockWeightNames(const model::ModelConfig& config, int layer) {
  std::vector<std::string> names;
  const std::string prefix = absl::StrCat("model.layers.", layer, ".");
  for (const model::TensorSpec& spec : model::TensorSpecs(config)) {
    if (spec.name.compare(0, prefix.size(), prefix) == 0) names.push_back(spec.name);
  }
  return names;
}

double LoraScale(double alpha, int rank, bool rslora) {
  if (rank < 1) return 0;
  return rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

double LoraSpec::Scale() const { return LoraScale(alpha, rank, rslora); }

bool LoraSpec::Targets(model::Projection projection) const {
  return std::find(targets.begin(), targets.end(), projection) != targets.end();
}

absl::StatusOr<LoraSpec> LoraSpecFromOptions(const protocols::LoraOptions& options) {
  LoraSpec spec;
  if (options.rank < 1 || options.rank > 4096) {
    return absl::InvalidArgumentError(absl::StrCat("peft.lora.rank must be in 1..4096, got ", options.rank));
  }
  if (!(options.alpha > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("peft.lora.alpha must be > 0, got ", options.alpha));
  }
  if (!(options.dropout >= 0 && options.dropout < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("peft.lora.dropout must be in [0, 1), got ", options.dropout));
  }
  spec.rank = options.rank;
  spec.alpha = options.alpha;
  spec.dropout = options.dropout;
  spec.rslora = options.rslora;
  spec.freeze_a = options.freeze_a;
  spec.targets.clear();
  for (const std::string& name : options.targets) {
    model::Projection p;
    if (!model::ProjectionFromName(name, &p)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "peft.lora.targets: unknown projection \"", name,
          "\" (expected q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj or down_proj)"));
    }
    if (spec.Targets(p)) {
      return absl::InvalidArgumentError(absl::StrCat("peft.lora.targets names \"", name, "\" twice"));
    }
    spec.targets.push_back(p);
  }
  if (spec.targets.empty()) return absl::InvalidArgumentError("peft.lora.targets must name at least one projection");
  // Keep the model's projection order whatever the order of the list.
  std::sort(spec.targets.begin(), spec.targets.end());
  return spec;
}

absl::StatusOr<TensorMap> InitAdapterState(const model::ModelConfig& config, const StateLayout& layout,
                                           uint64_t seed) {
  FEDFM_CHECK(config.Validate().ok());
  if (layout.lora_adapters && layout.lora.rank < 1) {
    return absl::InvalidArgumentError(absl::StrCat("LoRA rank must be >= 1, got ", layout.lora.rank));
  }
  if (layout.num_labels < 0 || layout.full_weight_blocks < 0) {
    return absl::InvalidArgumentError("num_labels and full_weight_blocks must be >= 0");
  }
  TensorMap state;
  auto fill = [seed](const std::string& name, protocols::Shape shape, const std::function<float(model::DataRng&)>& draw) {
    protocols::Tensor t = protocols::Tensor::Zeros(protocols::DType::kF32, std::move(shape));
    if (draw) {
      model::DataRng rng(model::DeriveSeed(seed, NameHash(name)));
      for (float& v : t.mutable_floats()) v = draw(rng);
    }
    return t;
  };
  if (layout.lora_adapters) {
    const int64_t r = layout.lora.rank;
    for (int layer = 0; layer < config.n_layers; ++layer) {
      for (model::Projection p : layout.lora.targets) {
        const auto [out, in] = model::ProjectionShape(config, p);
        const double bound = 1.0 / std::sqrt(static_cast<double>(in));
        const std::string a_name = LoraTensorName(layer, p, LoraMatrix::kA);
        FEDFM_CHECK(state
                        .Insert(a_name, fill(a_name, {r, in},
                                             [bound](model::DataRng& rng) {
                                               return static_cast<float>((2.0 * rng.UniformDouble() - 1.0) * bound);
                                             }))
                        .ok());
        const std::string b_name = LoraTensorName(layer, p, LoraMatrix::kB);
        FEDFM_CHECK(state.Insert(b_name, fill(b_name, {out, r}, nullptr)).ok());
      }
    }
  }
  if (layout.num_labels > 0) {
    FEDFM_CHECK(state
                    .Insert(kScoreHeadName, fill(kScoreHeadName, {layout.num_labels, config.dim},
                                                 [](model::DataRng& rng) {
                                                   return static_cast<float>(0.02 * rng.Normal());
                                                 }))
                    .ok());
  }
  return state;
}

absl::StatusOr<Coverage> TrainedCoverage(const TensorMap& state, const TrainRequest& request, int num_layers) {
  const bool partial = request.method == Method::kPartial;
  if (request.method == Method::kZerothOrder) {
    return absl::InvalidArgumentError("zeroth-order updates are not trained by backprop (TrainedCoverage)");
  }
  if (partial && (request.top_blocks < 1 || request.top_blocks > num_layers)) {
    return absl::InvalidArgumentError(
        absl::StrCat("partial-layer training needs top_blocks in 1..", num_layers, ", got ", request.top_blocks));
  }
  if (request.lora_rank < 0) {
    return absl::InvalidArgumentError(absl::StrCat("LoRA rank must be >= 0, got ", request.lora_rank));
  }
  const int first_block = partial ? num_layers - request.top_blocks : 0;
  Coverage coverage;
  for (const auto& [name, tensor] : state) {
    if (protocols::IsOptimizerState(name)) continue;  // see protocols/optimizer_state.h
    LoraTensorId id;
    const bool lora = ParseLoraTensorName(name, &id);
    const int block = lora ? id.layer : BlockOfTensor(name);
    if (block < 0 && !lora) {  // a head: every backprop method trains it
      coverage.tensors.push_back({name, -1, 0});
      continue;
    }
    if (block < first_block) continue;
    if (lora) {
      if (partial && request.full_weights) continue;
      if (request.freeze_a && id.matrix == LoraMatrix::kA) continue;
      const int dim = id.matrix == LoraMatrix::kA ? 0 : 1;
      if (tensor.shape().size() != 2) {
        return absl::InvalidArgumentError(absl::StrCat("LoRA tensor \"", name, "\" has shape ",
                                                       protocols::ShapeString(tensor.shape()), ", expected 2-D"));
      }
      const int64_t r_max = tensor.shape()[dim];
      if (request.lora_rank == 0 || request.lora_rank >= r_max) {
        coverage.tensors.push_back({name, -1, 0});
      } else {
        coverage.tensors.push_back({name, dim, request.lora_rank});
      }
    } else if (partial && request.full_weights) {
      coverage.tensors.push_back({name, -1, 0});
    }
  }
  if (coverage.tensors.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("method \"", partial ? "partial" : "lora", "\" with rank ", request.lora_rank, ", top_blocks ",
                     request.top_blocks, request.full_weights ? " (full weights)" : "",
                     " trains no tensor of the state (", state.size(), " tensors)"));
  }
  return coverage;
}

int FirstTrainedBlock(const Coverage& coverage, int num_layers) {
  int first = num_layers;
  for (const TensorCoverage& c : coverage.tensors) {
    const int block = BlockOfTensor(c.name);
    if (block >= 0) first = std::min(first, block);
  }
  return first;
}

int TopBlocksForRound(const protocols::PartialOptions& options, int64_t round, int num_layers) {
  FEDFM_CHECK(num_layers >= 1);
  int64_t k = options.top_blocks;
  if (options.progressive_every > 0) {
    const int64_t max_k = options.progressive_max > 0 ? options.progressive_max : num_layers;
    k = std::min<int64_t>(max_k, k + (std::max<int64_t>(0, round) / options.progressive_every) *
                                         std::max(1, options.progressive_step));
  }
  return static_cast<int>(std::clamp<int64_t>(k, 1, num_layers));
}

int64_t LoraParameterCount(const model::ModelConfig& config, const LoraSpec& spec, int rank) {
  int64_t per_block = 0;
  for (model::Projection p : spec.targets) {
    const auto [out, in] = model::ProjectionShape(config, p);
    per_block += static_cast<int64_t>(rank) * (out + in);
  }
  return per_block * config.n_layers;
}

}  // namespace fedfm::peft
