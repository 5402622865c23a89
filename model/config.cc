#include "model/config.h"

#include "absl/strings/str_cat.h"
#include "protocols/check.h"

namespace fedfm::model {
namespace {

absl::Status Bad(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("model config ", field, ": ", what));
}

}  // namespace

absl::Status ModelConfig::Validate() const {
  auto positive = [](const char* name, int64_t value) -> absl::Status {
    if (value <= 0) return Bad(name, absl::StrCat("must be positive, got ", value));
    return absl::OkStatus();
  };
  for (auto [name, value] : {std::pair<const char*, int64_t>{"dim", dim},
                             {"hidden_dim", hidden_dim},
                             {"n_layers", n_layers},
                             {"n_heads", n_heads},
                             {"n_kv_heads", n_kv_heads},
                             {"vocab_size", vocab_size},
                             {"max_seq_len", max_seq_len}}) {
    absl::Status status = positive(name, value);
    if (!status.ok()) return status;
  }
  if (head_dim < 0) return Bad("head_dim", absl::StrCat("must be >= 0, got ", head_dim));
  if (head_dim == 0 && dim % n_heads != 0) {
    return Bad("dim", absl::StrCat(dim, " is not divisible by n_heads ", n_heads));
  }
  if (HeadDim() % 2 != 0) return Bad("head_dim", absl::StrCat("must be even for rotary embeddings, got ", HeadDim()));
  if (n_heads % n_kv_heads != 0) {
    return Bad("n_heads", absl::StrCat(n_heads, " is not divisible by n_kv_heads ", n_kv_heads));
  }
  if (!(rope_theta > 0)) return Bad("rope_theta", absl::StrCat("must be positive, got ", rope_theta));
  if (!(norm_eps > 0)) return Bad("norm_eps", absl::StrCat("must be positive, got ", norm_eps));
  if (rope_scaling.type != RopeScalingType::kNone && !(rope_scaling.factor > 0)) {
    return Bad("rope_scaling.factor", absl::StrCat("must be positive, got ", rope_scaling.factor));
  }
  if (rope_scaling.type == RopeScalingType::kLlama3 &&
      (!(rope_scaling.high_freq_factor > rope_scaling.low_freq_factor) ||
       rope_scaling.original_max_position_embeddings <= 0)) {
    return Bad("rope_scaling", "llama3 scaling needs high_freq_factor > low_freq_factor and "
                               "original_max_position_embeddings > 0");
  }
  return absl::OkStatus();
}

int64_t ModelConfig::NumParameters() const {
  int64_t per_block = 2 * dim;  // the two norms
  for (Projection p : kAllProjections) {
    auto [out, in] = ProjectionShape(*this, p);
    per_block += out * in + (ProjectionHasBias(*this, p) ? out : 0);
  }
  int64_t total = vocab_size * dim + n_layers * per_block + dim;
  if (!tied_head) total += vocab_size * dim;
  return total;
}

const char* ProjectionName(Projection projection) {
  switch (projection) {
    case Projection::kQ: return "q_proj";
    case Projection::kK: return "k_proj";
    case Projection::kV: return "v_proj";
    case Projection::kO: return "o_proj";
    case Projection::kGate: return "gate_proj";
    case Projection::kUp: return "up_proj";
    case Projection::kDown: return "down_proj";
  }
  FEDFM_CHECK_MSG(false, "unknown Projection");
}

bool ProjectionFromName(const std::string& name, Projection* projection) {
  for (Projection p : kAllProjections) {
    if (name == ProjectionName(p)) {
      *projection = p;
      return true;
    }
  }
  return false;
}

std::string ProjectionModulePath(int layer, Projection projection) {
  bool attention = projection == Projection::kQ || projection == Projection::kK ||
                   projection == Projection::kV || projection == Projection::kO;
  return absl::StrCat("model.layers.", layer, attention ? ".self_attn." : ".mlp.", ProjectionName(projection));
}

std::array<int64_t, 2> ProjectionShape(const ModelConfig& config, Projection projection) {
  const int64_t q = config.n_heads * config.HeadDim();
  const int64_t kv = config.n_kv_heads * config.HeadDim();
  switch (projection) {
    case Projection::kQ: return {q, config.dim};
    case Projection::kK: return {kv, config.dim};
    case Projection::kV: return {kv, config.dim};
    case Projection::kO: return {config.dim, q};
    case Projection::kGate: return {config.hidden_dim, config.dim};
    case Projection::kUp: return {config.hidden_dim, config.dim};
    case Projection::kDown: return {config.dim, config.hidden_dim};
  }
  FEDFM_CHECK_MSG(false, "unknown Projection");
}

bool ProjectionHasBias(const ModelConfig& config, Projection projection) {
  switch (projection) {
    case Projection::kQ:
    case Projection::kK:
    case Projection::kV: return config.qkv_bias;
    case Projection::kO: return config.o_bias;
    default: return config.mlp_bias;
  }
}

std::vector<TensorSpec> TensorSpecs(const ModelConfig& config) {
  const int64_t d = config.dim;
  std::vector<TensorSpec> specs;
  specs.push_back({"model.embed_tokens.weight", {config.vocab_size, d}});
  for (int layer = 0; layer < config.n_layers; ++layer) {
    const std::string prefix = absl::StrCat("model.layers.", layer, ".");
    specs.push_back({prefix + "input_layernorm.weight", {d}});
    for (Projection p : kAllProjections) {
      if (p == Projection::kGate) specs.push_back({prefix + "post_attention_layernorm.weight", {d}});
      auto [out, in] = ProjectionShape(config, p);
      const std::string path = ProjectionModulePath(layer, p);
      specs.push_back({path + ".weight", {out, in}});
      if (ProjectionHasBias(config, p)) specs.push_back({path + ".bias", {out}});
    }
  }
  specs.push_back({"model.norm.weight", {d}});
  if (!config.tied_head) specs.push_back({"lm_head.weight", {config.vocab_size, d}});
  return specs;
}

}  // namespace fedfm::model
