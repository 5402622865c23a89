#include "model/transformer.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <optional>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/attention.h"
#include "model/dataset.h"
#include "model/internal/fused_ops.h"
#include "model/linear.h"
#include "model/rms_norm.h"
#include "protocols/check.h"
#include "protocols/status_macros.h"

namespace fedfm::model {

static_assert(kLossIgnoreIndex == kIgnoreIndex, "losses and dataset targets must agree on the ignore index");

namespace {

std::string ShapeText(at::IntArrayRef shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

int Index(Projection p) { return static_cast<int>(p); }

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Rotary inverse frequencies [hd / 2], float32, computed as Hugging Face does
// (so that fp32 logits agree to rounding), with optional scaling.
torch::Tensor InverseFrequencies(const ModelConfig& config) {
  const int64_t hd = config.HeadDim();
  torch::Tensor exponents = torch::arange(0, hd, 2, torch::kLong).to(torch::kFloat) / static_cast<double>(hd);
  torch::Tensor inv_freq = 1.0 / torch::pow(config.rope_theta, exponents);
  const RopeScaling& s = config.rope_scaling;
  switch (s.type) {
    case RopeScalingType::kNone:
      break;
    case RopeScalingType::kLinear:
      inv_freq = inv_freq / s.factor;
      break;
    case RopeScalingType::kLlama3: {
      const double old_len = static_cast<double>(s.original_max_position_embeddings);
      const double low_freq_wavelen = old_len / s.low_freq_factor;
      const double high_freq_wavelen = old_len / s.high_freq_factor;
      torch::Tensor wavelen = 2 * M_PI / inv_freq;
      torch::Tensor scaled = torch::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
      torch::Tensor smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      torch::Tensor smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
      torch::Tensor medium = (wavelen >= high_freq_wavelen).logical_and(wavelen <= low_freq_wavelen);
      inv_freq = torch::where(medium, smoothed, scaled);
      break;
    }
  }
  return inv_freq;
}

// Swaps each dimension with its rotary partner: (x2, x1) for halves, (x[2i+1], x[2i]) for adjacent pairs.
torch::Tensor RotatePartners(const torch::Tensor& x, RopeStyle style) {
  const int64_t hd = x.size(-1);
  if (style == RopeStyle::kHalves) {
    return torch::cat({x.narrow(-1, hd / 2, hd / 2), x.narrow(-1, 0, hd / 2)}, -1);
  }
  std::vector<int64_t> pairs(x.sizes().begin(), x.sizes().end());
  pairs.back() = hd / 2;
  pairs.push_back(2);
  return x.reshape(pairs).flip(-1).reshape(x.sizes());
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Model>> Model::Create(const ModelConfig& config, NamedTensors weights,
                                                           const ModelOptions& options) {
  FEDFM_RETURN_IF_ERROR(config.Validate());
  if (options.dtype != torch::kFloat && options.dtype != torch::kBFloat16) {
    return absl::InvalidArgumentError(
        absl::StrCat("model dtype must be float32 or bfloat16, got ", c10::toString(options.dtype)));
  }
  std::unordered_map<std::string, torch::Tensor> by_name;
  for (auto& [name, tensor] : weights) {
    if (!tensor.defined()) return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" is undefined"));
    if (!by_name.emplace(name, tensor).second) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" appears twice"));
    }
  }
  weights.clear();
  std::unordered_map<std::string, torch::Tensor> ready;
  for (const TensorSpec& spec : TensorSpecs(config)) {
    auto it = by_name.find(spec.name);
    if (it == by_name.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("missing tensor \"", spec.name, "\" (expected shape ", ShapeText(spec.shape), ")"));
    }
    if (it->second.sizes() != at::IntArrayRef(spec.shape)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", spec.name, "\" has shape ",
                                                     ShapeText(it->second.sizes()), " but the config expects ",
                                                     ShapeText(spec.shape)));
    }
    if (!it->second.is_floating_point()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", spec.name, "\" has non-float dtype ",
                                                     c10::toString(it->second.scalar_type())));
    }
    torch::NoGradGuard no_grad;
    ready[spec.name] = it->second.detach().to(options.device, options.dtype).contiguous();
    by_name.erase(it);
  }
  if (!by_name.empty()) {
    std::vector<std::string> extra;
    for (const auto& [name, _] : by_name) extra.push_back(name);
    std::sort(extra.begin(), extra.end());
    return absl::InvalidArgumentError(absl::StrCat("unexpected tensor \"", extra.front(), "\" (",
                                                   extra.size(), " tensor(s) the config does not describe)"));
  }

  std::shared_ptr<Model> model(new Model(config, options));
  torch::NoGradGuard no_grad;
  model->embed_ = ready.at("model.embed_tokens.weight");
  model->final_norm_ = ready.at("model.norm.weight");
  model->lm_head_ = config.tied_head ? model->embed_ : ready.at("lm_head.weight");
  for (int layer = 0; layer < config.n_layers; ++layer) {
    const std::string prefix = absl::StrCat("model.layers.", layer, ".");
    BlockWeights w;
    w.attn_norm = ready.at(prefix + "input_layernorm.weight");
    w.ffn_norm = ready.at(prefix + "post_attention_layernorm.weight");
    for (Projection p : kAllProjections) {
      const std::string path = ProjectionModulePath(layer, p);
      w.weight[Index(p)] = ready.at(path + ".weight");
      if (ProjectionHasBias(config, p)) w.bias[Index(p)] = ready.at(path + ".bias");
    }
    // Fuse, then make the separate tensors views of the fused ones: one copy in memory.
    auto fuse = [&w](std::initializer_list<Projection> group, torch::Tensor* fused_weight, torch::Tensor* fused_bias) {
      std::vector<torch::Tensor> ws, bs;
      for (Projection p : group) {
        ws.push_back(w.weight[Index(p)]);
        if (w.bias[Index(p)].defined()) bs.push_back(w.bias[Index(p)]);
      }
      *fused_weight = torch::cat(ws, 0);
      if (!bs.empty()) *fused_bias = torch::cat(bs, 0);
      int64_t row = 0;
      for (Projection p : group) {
        const int64_t rows = w.weight[Index(p)].size(0);
        w.weight[Index(p)] = fused_weight->narrow(0, row, rows);
        if (w.bias[Index(p)].defined()) w.bias[Index(p)] = fused_bias->narrow(0, row, rows);
        row += rows;
      }
    };
    fuse({Projection::kQ, Projection::kK, Projection::kV}, &w.qkv_weight, &w.qkv_bias);
    fuse({Projection::kGate, Projection::kUp}, &w.gate_up_weight, &w.gate_up_bias);
    model->blocks_.push_back(std::move(w));
  }

  // Rotary tables: positions x inverse frequencies, in float32 like HF, then
  // cast to the model dtype. Sign of the rotation folded into sin.
  torch::Tensor inv_freq = InverseFrequencies(config);
  torch::Tensor positions = torch::arange(config.max_seq_len, torch::kLong).to(torch::kFloat);
  torch::Tensor angles = torch::outer(positions, inv_freq);  // [S, hd/2]
  torch::Tensor cos = angles.cos(), sin = angles.sin();
  if (config.rope_style == RopeStyle::kHalves) {
    model->rope_cos_ = torch::cat({cos, cos}, -1);
    model->rope_sin_ = torch::cat({-sin, sin}, -1);
  } else {
    model->rope_cos_ = torch::stack({cos, cos}, -1).reshape({config.max_seq_len, -1});
    model->rope_sin_ = torch::stack({-sin, sin}, -1).reshape({config.max_seq_len, -1});
  }
  model->rope_cos_ = model->rope_cos_.to(options.device, options.dtype).contiguous();
  model->rope_sin_ = model->rope_sin_.to(options.device, options.dtype).contiguous();
  return std::shared_ptr<const Model>(std::move(model));
}

absl::StatusOr<std::shared_ptr<const Model>> Model::RandomInit(const ModelConfig& config, uint64_t seed,
                                                               const ModelOptions& options) {
  FEDFM_RETURN_IF_ERROR(config.Validate());
  at::Generator generator = at::detail::createCPUGenerator(seed);
  NamedTensors weights;
  torch::NoGradGuard no_grad;
  for (const TensorSpec& spec : TensorSpecs(config)) {
    torch::Tensor noise = torch::randn(spec.shape, generator, torch::TensorOptions().dtype(torch::kFloat));
    const bool is_norm = EndsWith(spec.name, "norm.weight");
    weights.emplace_back(spec.name, is_norm ? 1.0 + 0.1 * noise : 0.02 * noise);
  }
  return Create(config, std::move(weights), options);
}

torch::Tensor Model::RmsNorm(const torch::Tensor& x, const torch::Tensor& weight) const {
  // float32 statistics whatever the dtype, as HF's LlamaRMSNorm.
  if (CpuRmsNormSupports(x, weight)) return RmsNormCpu(x, weight, config_.norm_eps);
  if (torch::Tensor fused = internal::FusedRmsNorm(x, weight, config_.norm_eps); fused.defined()) return fused;
  return RmsNormReference(x, weight, config_.norm_eps);
}

torch::Tensor Model::Rope(const torch::Tensor& x, int64_t start_pos) const {
  // x: [B, T, heads, hd]; tables sliced to [1, T, 1, hd].
  const int64_t t = x.size(1), hd = x.size(3);
  torch::Tensor cos = rope_cos_.narrow(0, start_pos, t).view({1, t, 1, hd});
  torch::Tensor sin = rope_sin_.narrow(0, start_pos, t).view({1, t, 1, hd});
  return torch::addcmul(x * cos, RotatePartners(x, config_.rope_style), sin);
}

torch::Tensor Model::Project(int layer, Projection p, const BlockWeights& w, const torch::Tensor& x,
                             const ProjectionHook* hook) const {
  torch::Tensor y = Linear(x, w.weight[Index(p)], w.bias[Index(p)]);
  if (hook != nullptr && hook->Covers(layer, p)) y = hook->Apply(layer, p, x, y);
  return y;
}

torch::Tensor Model::Block(int layer, const BlockWeights& w, const torch::Tensor& x, int64_t start_pos,
                           const ForwardOptions& options) const {
  const ProjectionHook* hook = options.hook;
  const int64_t b = x.size(0), t = x.size(1);
  const int64_t heads = config_.n_heads, kv_heads = config_.n_kv_heads, hd = config_.HeadDim();
  auto hooked = [&](Projection p, const torch::Tensor& input, torch::Tensor y) {
    if (hook != nullptr && hook->Covers(layer, p)) return hook->Apply(layer, p, input, y);
    return y;
  };

  // Attention. [B, T, D] -> q [B, T, H*hd], k, v [B, T, KV*hd]
  torch::Tensor xn = RmsNorm(x, w.attn_norm);
  torch::Tensor q, k, v;
  if (w.qkv_weight.defined()) {
    // One split rather than three narrows: its backward is one cat instead
    // of three zero-filled full-width gradients summed.
    const std::vector<torch::Tensor> qkv =
        Linear(xn, w.qkv_weight, w.qkv_bias).split_with_sizes({heads * hd, kv_heads * hd, kv_heads * hd}, -1);
    q = hooked(Projection::kQ, xn, qkv[0]);
    k = hooked(Projection::kK, xn, qkv[1]);
    v = hooked(Projection::kV, xn, qkv[2]);
  } else {
    q = Project(layer, Projection::kQ, w, xn, hook);
    k = Project(layer, Projection::kK, w, xn, hook);
    v = Project(layer, Projection::kV, w, xn, hook);
  }
  // -> [B, heads, T, hd]
  q = Rope(q.view({b, t, heads, hd}), start_pos).transpose(1, 2);
  k = Rope(k.view({b, t, kv_heads, hd}), start_pos).transpose(1, 2);
  v = v.view({b, t, kv_heads, hd}).transpose(1, 2);
  if (options.kv_cache != nullptr) {
    KvCache& cache = *options.kv_cache;
    cache.k[layer].narrow(2, start_pos, t).copy_(k);
    cache.v[layer].narrow(2, start_pos, t).copy_(v);
    k = cache.k[layer].narrow(2, 0, start_pos + t);
    v = cache.v[layer].narrow(2, 0, start_pos + t);
  }
  torch::Tensor attn = CausalAttention(q, k, v).transpose(1, 2).reshape({b, t, heads * hd});
  torch::Tensor h = x + Project(layer, Projection::kO, w, attn, hook);

  // SwiGLU MLP. [B, T, D] -> [B, T, F] -> [B, T, D]
  torch::Tensor hn = RmsNorm(h, w.ffn_norm);
  torch::Tensor gate, up;
  if (w.gate_up_weight.defined()) {
    const int64_t f = config_.hidden_dim;
    const std::vector<torch::Tensor> gate_up = Linear(hn, w.gate_up_weight, w.gate_up_bias).split_with_sizes({f, f}, -1);
    gate = hooked(Projection::kGate, hn, gate_up[0]);
    up = hooked(Projection::kUp, hn, gate_up[1]);
  } else {
    gate = Project(layer, Projection::kGate, w, hn, hook);
    up = Project(layer, Projection::kUp, w, hn, hook);
  }
  torch::Tensor act = torch::silu(gate) * up;
  return h + Project(layer, Projection::kDown, w, act, hook);
}

ForwardResult Model::Forward(const torch::Tensor& tokens_in, const ForwardOptions& options) const {
  TORCH_CHECK(tokens_in.dim() == 2, "Forward: tokens must be [B, T], got ", tokens_in.sizes());
  TORCH_CHECK(!tokens_in.is_floating_point(), "Forward: tokens must be integer ids");
  torch::Tensor tokens = tokens_in.to(options_.device, torch::kLong);
  const int64_t b = tokens.size(0), t = tokens.size(1);
  TORCH_CHECK(b > 0 && t > 0, "Forward: empty batch ", tokens.sizes());
  const int64_t lo = tokens.min().item<int64_t>(), hi = tokens.max().item<int64_t>();
  TORCH_CHECK(lo >= 0 && hi < config_.vocab_size, "Forward: token id ", lo < 0 ? lo : hi,
              " is outside the vocabulary [0, ", config_.vocab_size, ")");
  const int n_layers = static_cast<int>(config_.n_layers);
  TORCH_CHECK(options.first_trainable_block >= 0 && options.first_trainable_block <= n_layers,
              "Forward: first_trainable_block ", options.first_trainable_block, " is outside [0, ", n_layers, "]");
  int64_t start_pos = 0;
  if (options.kv_cache != nullptr) {
    const KvCache& cache = *options.kv_cache;
    TORCH_CHECK(!torch::GradMode::is_enabled(), "Forward: a KV cache is for inference; disable grad mode");
    TORCH_CHECK(static_cast<int64_t>(cache.k.size()) == config_.n_layers && cache.k.front().size(0) == b,
                "Forward: KV cache was made for another model or batch size");
    start_pos = cache.length;
    TORCH_CHECK(start_pos + t <= cache.capacity(), "Forward: KV cache holds ", cache.capacity(),
                " positions; ", start_pos + t, " needed");
  }
  TORCH_CHECK(start_pos + t <= config_.max_seq_len, "Forward: ", start_pos + t,
              " positions exceed max_seq_len ", config_.max_seq_len);
  for (const auto& [layer, weights] : options.block_overrides) {
    TORCH_CHECK(layer >= 0 && layer < n_layers && weights != nullptr, "Forward: bad block override for layer ",
                layer);
  }

  // Held while the frozen prefix runs.
  std::unique_ptr<torch::NoGradGuard> frozen;
  if (options.first_trainable_block > 0) frozen = std::make_unique<torch::NoGradGuard>();
  torch::Tensor x = torch::embedding(embed_, tokens);  // [B, T, D]
  for (int layer = 0; layer < n_layers; ++layer) {
    if (layer == options.first_trainable_block) frozen.reset();
    auto it = options.block_overrides.find(layer);
    const BlockWeights& w = it == options.block_overrides.end() ? blocks_[layer] : *it->second;
    x = Block(layer, w, x, start_pos, options);
  }
  frozen.reset();
  if (options.kv_cache != nullptr) options.kv_cache->length += t;

  ForwardResult result;
  x = RmsNorm(x, final_norm_);
  if (options.return_hidden) result.hidden = x;
  if (options.compute_logits) result.logits = Linear(x, lm_head_);
  if (options.classification_head != nullptr) {
    const ClassificationHead& head = *options.classification_head;
    torch::Tensor pooled = PoolHidden(x, options.attention_mask, head.pooling);
    result.class_logits = torch::linear(pooled.to(head.weight.scalar_type()), head.weight, head.bias);
  }
  return result;
}

BlockWeights Model::CloneBlock(int layer, bool requires_grad) const {
  const BlockWeights& base = blocks_.at(layer);
  auto copy = [requires_grad](const torch::Tensor& t) {
    if (!t.defined()) return t;
    return t.detach().clone().contiguous().set_requires_grad(requires_grad);
  };
  BlockWeights w;
  w.attn_norm = copy(base.attn_norm);
  w.ffn_norm = copy(base.ffn_norm);
  for (int i = 0; i < kNumProjections; ++i) {
    w.weight[i] = copy(base.weight[i]);
    w.bias[i] = copy(base.bias[i]);
  }
  return w;
}

NamedTensors Model::NamedParameters() const {
  NamedTensors out;
  out.emplace_back("model.embed_tokens.weight", embed_);
  for (int layer = 0; layer < config_.n_layers; ++layer) {
    const BlockWeights& w = blocks_[layer];
    const std::string prefix = absl::StrCat("model.layers.", layer, ".");
    out.emplace_back(prefix + "input_layernorm.weight", w.attn_norm);
    for (Projection p : kAllProjections) {
      if (p == Projection::kGate) out.emplace_back(prefix + "post_attention_layernorm.weight", w.ffn_norm);
      const std::string path = ProjectionModulePath(layer, p);
      out.emplace_back(path + ".weight", w.weight[Index(p)]);
      if (w.bias[Index(p)].defined()) out.emplace_back(path + ".bias", w.bias[Index(p)]);
    }
  }
  out.emplace_back("model.norm.weight", final_norm_);
  if (!config_.tied_head) out.emplace_back("lm_head.weight", lm_head_);
  return out;
}

int64_t Model::NumParameters() const {
  int64_t total = 0;
  for (const auto& [_, tensor] : NamedParameters()) total += tensor.numel();
  return total;
}

KvCache Model::NewKvCache(int64_t batch, int64_t capacity) const {
  TORCH_CHECK(batch > 0 && capacity > 0 && capacity <= config_.max_seq_len, "NewKvCache: batch ", batch,
              ", capacity ", capacity, " (max_seq_len ", config_.max_seq_len, ")");
  KvCache cache;
  auto options = torch::TensorOptions().dtype(options_.dtype).device(options_.device);
  for (int64_t layer = 0; layer < config_.n_layers; ++layer) {
    cache.k.push_back(torch::zeros({batch, config_.n_kv_heads, capacity, config_.HeadDim()}, options));
    cache.v.push_back(torch::zeros({batch, config_.n_kv_heads, capacity, config_.HeadDim()}, options));
  }
  return cache;
}

torch::Tensor CausalLmLoss(const torch::Tensor& logits, const torch::Tensor& labels) {
  TORCH_CHECK(logits.dim() == 3 && labels.dim() == 2 && logits.size(0) == labels.size(0) &&
                  logits.size(1) == labels.size(1),
              "CausalLmLoss: logits ", logits.sizes(), " and labels ", labels.sizes(), " disagree");
  const int64_t vocab = logits.size(2);
  torch::Tensor fused = internal::FusedCrossEntropyMean(logits.reshape({-1, vocab}), labels.reshape({-1}),
                                                        kLossIgnoreIndex);
  if (fused.defined()) return fused;
  return torch::nn::functional::cross_entropy(
      logits.reshape({-1, vocab}).to(torch::kFloat), labels.reshape({-1}).to(logits.device(), torch::kLong),
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(kLossIgnoreIndex));
}

torch::Tensor NextTokenLabels(const torch::Tensor& tokens, const torch::Tensor& loss_mask) {
  TORCH_CHECK(tokens.dim() == 2, "NextTokenLabels: tokens must be [B, T], got ", tokens.sizes());
  TORCH_CHECK(!loss_mask.defined() || loss_mask.sizes() == tokens.sizes(), "NextTokenLabels: loss_mask ",
              loss_mask.sizes(), " does not match tokens ", tokens.sizes());
  torch::Tensor ids = tokens.to(torch::kLong);
  torch::Tensor labels = torch::full_like(ids, kLossIgnoreIndex);
  const int64_t t = ids.size(1);
  if (t < 2) return labels;
  torch::Tensor shifted = labels.narrow(1, 0, t - 1);
  shifted.copy_(ids.narrow(1, 1, t - 1));
  if (loss_mask.defined()) {
    shifted.masked_fill_(loss_mask.narrow(1, 1, t - 1).to(ids.device()).eq(0), kLossIgnoreIndex);
  }
  return labels;
}

torch::Tensor NextTokenLoss(const torch::Tensor& logits, const torch::Tensor& tokens, const torch::Tensor& loss_mask) {
  return CausalLmLoss(logits, NextTokenLabels(tokens.to(logits.device()), loss_mask));
}

torch::Tensor PoolHidden(const torch::Tensor& hidden, const torch::Tensor& attention_mask, Pooling pooling) {
  TORCH_CHECK(hidden.dim() == 3, "PoolHidden: hidden must be [B, T, D], got ", hidden.sizes());
  const int64_t b = hidden.size(0), t = hidden.size(1);
  TORCH_CHECK(!attention_mask.defined() || (attention_mask.dim() == 2 && attention_mask.size(0) == b &&
                                            attention_mask.size(1) == t),
              "PoolHidden: attention_mask ", attention_mask.sizes(), " does not match hidden ", hidden.sizes());
  if (pooling == Pooling::kLastToken) {
    if (!attention_mask.defined()) return hidden.select(1, t - 1);
    torch::Tensor last = attention_mask.to(hidden.device()).ne(0).sum(1).sub(1).clamp_min(0);
    torch::Tensor rows = torch::arange(b, torch::TensorOptions().dtype(torch::kLong).device(hidden.device()));
    return hidden.index({rows, last});
  }
  if (!attention_mask.defined()) return hidden.mean(1);
  torch::Tensor m = attention_mask.to(hidden.device()).ne(0).to(hidden.scalar_type()).unsqueeze(-1);  // [B, T, 1]
  return (hidden * m).sum(1) / m.sum(1).clamp_min(1);
}

}  // namespace fedfm::model
