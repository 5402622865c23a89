#include "peft/trainable.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <mutex>
#include <set>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/torch_bridge.h"
#include "protocols/check.h"
#include "protocols/optimizer_state.h"
#include "protocols/status_macros.h"

namespace fedfm::peft {
namespace {

using protocols::Coverage;
using protocols::TensorCoverage;
using protocols::TensorMap;

std::string ShapeText(const std::vector<int64_t>& shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

// What a state holds, checked against a model config.
struct ParsedState {
  int rank = 0;  // r_max; 0 without LoRA tensors
  // (layer, projection) -> names of A and B, in state order of the A's.
  std::vector<std::pair<std::pair<int, model::Projection>, std::pair<std::string, std::string>>> lora;
  std::vector<std::string> full;  // full block weights, state order
  std::string head;               // kScoreHeadName when present
};

absl::StatusOr<ParsedState> ParseState(const model::ModelConfig& config, const TensorMap& state) {
  std::unordered_map<std::string, std::vector<int64_t>> specs;
  for (const model::TensorSpec& spec : model::TensorSpecs(config)) specs.emplace(spec.name, spec.shape);
  ParsedState parsed;
  std::map<std::pair<int, model::Projection>, size_t> index;
  for (const auto& [name, tensor] : state) {
    if (protocols::IsOptimizerState(name)) continue;  // not part of the forward
    if (!protocols::IsFloating(tensor.dtype())) {
      return absl::InvalidArgumentError(
          absl::StrCat("state tensor \"", name, "\" has non-float dtype ", protocols::DTypeName(tensor.dtype())));
    }
    const std::vector<int64_t>& shape = tensor.shape();
    LoraTensorId id;
    if (ParseLoraTensorName(name, &id)) {
      if (id.layer >= config.n_layers) {
        return absl::InvalidArgumentError(absl::StrCat("state tensor \"", name, "\": layer ", id.layer,
                                                       " but the model has ", config.n_layers, " layers"));
      }
      const auto [out, in] = model::ProjectionShape(config, id.projection);
      const bool is_a = id.matrix == LoraMatrix::kA;
      const int64_t rank = shape.size() == 2 ? shape[is_a ? 0 : 1] : -1;
      const int64_t other = shape.size() == 2 ? shape[is_a ? 1 : 0] : -1;
      if (rank < 1 || other != (is_a ? in : out)) {
        return absl::InvalidArgumentError(
            absl::StrCat("LoRA tensor \"", name, "\" has shape ", ShapeText(shape), ", expected ",
                         is_a ? absl::StrCat("[r, ", in, "]") : absl::StrCat("[", out, ", r]")));
      }
      if (parsed.rank == 0) parsed.rank = static_cast<int>(rank);
      if (rank != parsed.rank) {
        return absl::InvalidArgumentError(absl::StrCat("LoRA tensor \"", name, "\" has rank ", rank, " but others ",
                                                       parsed.rank, " (per-module ranks are not supported)"));
      }
      const auto key = std::make_pair(id.layer, id.projection);
      auto [it, inserted] = index.emplace(key, parsed.lora.size());
      if (inserted) parsed.lora.push_back({key, {}});
      (is_a ? parsed.lora[it->second].second.first : parsed.lora[it->second].second.second) = name;
      continue;
    }
    if (name == kScoreHeadName) {
      if (shape.size() != 2 || shape[1] != config.dim || shape[0] < 1) {
        return absl::InvalidArgumentError(absl::StrCat("head \"", name, "\" has shape ", ShapeText(shape),
                                                       ", expected [num_labels, ", config.dim, "]"));
      }
      parsed.head = name;
      continue;
    }
    auto spec = specs.find(name);
    if (spec != specs.end() && BlockOfTensor(name) >= 0) {
      if (spec->second != shape) {
        return absl::InvalidArgumentError(absl::StrCat("state tensor \"", name, "\" has shape ", ShapeText(shape),
                                                       " but the model's is ", ShapeText(spec->second)));
      }
      parsed.full.push_back(name);
      continue;
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "state tensor \"", name,
        "\" is neither a LoRA tensor, a block weight of the model nor a classification head (" , kScoreHeadName, ")"));
  }
  for (const auto& [key, names] : parsed.lora) {
    if (names.first.empty() || names.second.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("LoRA module of layer ", key.first, " ",
                                                     model::ProjectionName(key.second), " has only ",
                                                     names.first.empty() ? names.second : names.first));
    }
  }
  return parsed;
}

// A host tensor as float32 on `device` (a copy).
torch::Tensor ToDevice(const protocols::Tensor& t, const torch::Device& device, torch::ScalarType dtype) {
  return model::ToTorch(t).to(device, dtype, /*non_blocking=*/false, /*copy=*/true);
}

at::Generator MakeGenerator(const torch::Device& device, uint64_t seed) {
  if (device.is_cpu()) return at::detail::createCPUGenerator(seed);
  at::Generator base = at::globalContext().defaultGenerator(device);
  at::Generator gen;
  {
    std::lock_guard<std::mutex> lock(base.mutex());
    gen = base.clone();
  }
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_current_seed(seed);
  }
  return gen;
}

}  // namespace

absl::StatusOr<std::unique_ptr<StateForward>> StateForward::Create(std::shared_ptr<const model::Model> model,
                                                                   const TensorMap& state, const Coverage& trained,
                                                                   const StateForwardOptions& options) {
  FEDFM_CHECK(model != nullptr);
  const model::ModelConfig& config = model->config();
  FEDFM_ASSIGN_OR_RETURN(ParsedState parsed, ParseState(config, state));
  if (!(options.alpha > 0)) return absl::InvalidArgumentError(absl::StrCat("LoRA alpha must be > 0, got ", options.alpha));
  if (!(options.dropout >= 0 && options.dropout < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("LoRA dropout must be in [0, 1), got ", options.dropout));
  }
  std::unique_ptr<StateForward> f(new StateForward(std::move(model), options));
  const torch::Device device = f->model_->device();
  const torch::ScalarType model_dtype = f->model_->dtype();
  const int n_layers = static_cast<int>(config.n_layers);
  f->state_ = state;
  f->lora_rank_ = parsed.rank;
  f->scale_ = LoraScale(options.alpha, parsed.rank, options.rslora);
  f->compute_dtype_ = options.compute_dtype.value_or(model_dtype);

  // Trained pieces, in coverage order.
  std::set<std::string> seen;
  std::unordered_map<std::string, int> piece_of;
  std::vector<torch::Tensor> initial;
  int64_t offset = 0;
  for (const TensorCoverage& c : trained.tensors) {
    const protocols::Tensor* t = state.Find(c.name);
    if (t == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("coverage names \"", c.name, "\", which the state lacks"));
    }
    if (!seen.insert(c.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("coverage names \"", c.name, "\" twice"));
    }
    Piece piece;
    piece.name = c.name;
    piece.full_shape = t->shape();
    piece.slice_shape = t->shape();
    piece.coverage = {c.name, -1, 0};
    if (c.rank_dim >= 0) {
      LoraTensorId id;
      if (!ParseLoraTensorName(c.name, &id)) {
        return absl::InvalidArgumentError(
            absl::StrCat("coverage of \"", c.name, "\" is a rank slice, but it is not a LoRA tensor"));
      }
      const int dim = id.matrix == LoraMatrix::kA ? 0 : 1;
      if (c.rank_dim != dim || c.rank < 1 || c.rank > t->shape()[dim]) {
        return absl::InvalidArgumentError(absl::StrCat("coverage of \"", c.name, "\": rank_dim ", c.rank_dim,
                                                       ", rank ", c.rank, " do not fit shape ",
                                                       ShapeText(t->shape()), " (rank along dim ", dim, ")"));
      }
      if (c.rank < t->shape()[dim]) {
        piece.coverage = c;
        piece.slice_shape[dim] = c.rank;
      }
    }
    piece.offset = offset;
    piece.numel = protocols::NumElements(piece.slice_shape);
    offset += piece.numel;
    torch::Tensor value = model::ToTorch(*t).to(torch::kFloat);
    if (piece.coverage.rank_dim >= 0) value = value.narrow(piece.coverage.rank_dim, 0, piece.coverage.rank);
    initial.push_back(value.reshape({-1}));
    piece_of[c.name] = static_cast<int>(f->pieces_.size());
    f->coverage_.tensors.push_back(piece.coverage);
    f->pieces_.push_back(std::move(piece));
  }
  {
    torch::NoGradGuard no_grad;
    f->initial_ = initial.empty() ? torch::zeros({0}, torch::kFloat) : torch::cat(initial).to(device);
    f->initial_ = f->initial_.contiguous();
    f->flat_ = f->initial_.clone().set_requires_grad(true);
  }
  auto piece_index = [&](const std::string& name) {
    auto it = piece_of.find(name);
    return it == piece_of.end() ? -1 : it->second;
  };
  auto whole = [&](int piece) { return piece >= 0 && f->pieces_[piece].coverage.rank_dim < 0; };

  torch::NoGradGuard no_grad;
  for (const auto& [key, names] : parsed.lora) {
    LoraModule m;
    m.layer = key.first;
    m.projection = key.second;
    m.a_piece = piece_index(names.first);
    m.b_piece = piece_index(names.second);
    // Frozen values are kept unless the tensor trains whole.
    if (!whole(m.a_piece)) m.a = ToDevice(state.at(names.first), device, torch::kFloat);
    if (!whole(m.b_piece)) m.b = ToDevice(state.at(names.second), device, torch::kFloat);
    f->lora_.push_back(std::move(m));
  }
  std::map<int, size_t> block_index;
  for (const std::string& name : parsed.full) {
    const int layer = BlockOfTensor(name);
    auto [it, inserted] = block_index.emplace(layer, f->blocks_.size());
    if (inserted) {
      f->blocks_.emplace_back();
      f->blocks_.back().layer = layer;
    }
    FullBlock& block = f->blocks_[it->second];
    const int piece = piece_index(name);
    if (piece >= 0) {
      block.pieces[name] = piece;
    } else {
      block.tensors.emplace_back(name, ToDevice(state.at(name), device, model_dtype));
    }
  }
  if (!parsed.head.empty()) {
    f->head_piece_ = piece_index(parsed.head);
    if (f->head_piece_ < 0) f->head_frozen_ = ToDevice(state.at(parsed.head), device, torch::kFloat);
  }
  f->head_.pooling = options.pooling;
  f->first_trainable_block_ = FirstTrainedBlock(f->coverage_, n_layers);
  std::optional<at::Generator> generator;
  if (options.dropout > 0) generator = MakeGenerator(device, options.dropout_seed);
  f->hook_ = std::make_unique<LoraHook>(n_layers, f->scale_, options.dropout, std::move(generator));
  f->Materialize();
  return f;
}

torch::Tensor StateForward::PieceView(int piece) const {
  const Piece& p = pieces_[piece];
  return flat_.narrow(0, p.offset, p.numel).view(p.slice_shape);
}

torch::Tensor StateForward::Splice(int piece, const torch::Tensor& frozen) const {
  torch::Tensor view = PieceView(piece);
  const TensorCoverage& c = pieces_[piece].coverage;
  if (c.rank_dim < 0) return view;
  const int64_t rest = frozen.size(c.rank_dim) - c.rank;
  return torch::cat({view, frozen.narrow(c.rank_dim, c.rank, rest)}, c.rank_dim);
}

void StateForward::Materialize() {
  hook_->Clear();
  for (const LoraModule& m : lora_) {
    torch::Tensor a = m.a_piece >= 0 ? Splice(m.a_piece, m.a) : m.a;
    torch::Tensor b = m.b_piece >= 0 ? Splice(m.b_piece, m.b) : m.b;
    hook_->Set(m.layer, m.projection, a.to(compute_dtype_), b.to(compute_dtype_),
               /*dropout=*/training_ && (m.a_piece >= 0 || m.b_piece >= 0));
  }
  const torch::ScalarType dtype = model_->dtype();
  for (FullBlock& block : blocks_) {
    const model::BlockWeights& base = model_->block(block.layer);
    const std::string prefix = absl::StrCat("model.layers.", block.layer, ".");
    auto pick = [&](const std::string& name, const torch::Tensor& fallback) -> torch::Tensor {
      auto piece = block.pieces.find(name);
      if (piece != block.pieces.end()) return PieceView(piece->second).to(dtype);
      for (const auto& [n, t] : block.tensors) {
        if (n == name) return t;
      }
      return fallback;
    };
    model::BlockWeights w;
    w.attn_norm = pick(prefix + "input_layernorm.weight", base.attn_norm);
    w.ffn_norm = pick(prefix + "post_attention_layernorm.weight", base.ffn_norm);
    for (model::Projection p : model::kAllProjections) {
      const int i = static_cast<int>(p);
      const std::string path = model::ProjectionModulePath(block.layer, p);
      w.weight[i] = pick(path + ".weight", base.weight[i]);
      if (base.bias[i].defined()) w.bias[i] = pick(path + ".bias", base.bias[i]);
    }
    block.weights = std::move(w);
  }
  if (head_piece_ >= 0) {
    head_.weight = PieceView(head_piece_);
  } else if (head_frozen_.defined()) {
    head_.weight = head_frozen_;
  }
}

model::ForwardOptions StateForward::forward_options() const {
  model::ForwardOptions options;
  if (!lora_.empty()) options.hook = hook_.get();
  for (const FullBlock& block : blocks_) options.block_overrides[block.layer] = &block.weights;
  if (has_head()) options.classification_head = &head_;
  options.first_trainable_block = pieces_.empty() ? 0 : first_trainable_block_;
  return options;
}

absl::StatusOr<TensorMap> StateForward::Delta() const {
  torch::NoGradGuard no_grad;
  return Scatter(flat_.detach() - initial_, "");
}

absl::StatusOr<torch::Tensor> StateForward::Gather(const TensorMap& source, std::string_view prefix) const {
  std::vector<torch::Tensor> parts;
  for (const Piece& p : pieces_) {
    const std::string name = std::string(prefix) + p.name;
    const protocols::Tensor* t = source.Find(name);
    if (t == nullptr) return absl::InvalidArgumentError(absl::StrCat("the state has no \"", name, "\""));
    if (t->shape() != p.full_shape) {
      return absl::InvalidArgumentError(absl::StrCat("\"", name, "\" has shape ", ShapeText(t->shape()),
                                                     ", expected ", ShapeText(p.full_shape)));
    }
    torch::Tensor value = model::ToTorch(*t).to(torch::kFloat);
    if (p.coverage.rank_dim >= 0) value = value.narrow(p.coverage.rank_dim, 0, p.coverage.rank);
    parts.push_back(value.reshape({-1}));
  }
  torch::NoGradGuard no_grad;
  if (parts.empty()) return torch::zeros({0}, torch::TensorOptions().dtype(torch::kFloat).device(model_->device()));
  return torch::cat(parts).to(model_->device()).contiguous();
}

absl::StatusOr<TensorMap> StateForward::Scatter(const torch::Tensor& flat, std::string_view prefix) const {
  torch::NoGradGuard no_grad;
  if (flat.dim() != 1 || flat.numel() != flat_.numel()) {
    return absl::InvalidArgumentError(absl::StrCat("a flat buffer of ", flat.numel(), " values for ", flat_.numel(),
                                                   " trained parameters"));
  }
  const torch::Tensor host = flat.to(torch::kCPU, torch::kFloat);
  TensorMap out;
  for (const Piece& p : pieces_) {
    torch::Tensor values = host.narrow(0, p.offset, p.numel).view(p.slice_shape);
    torch::Tensor full = torch::zeros(p.full_shape, torch::kFloat);
    if (p.coverage.rank_dim >= 0) {
      full.narrow(p.coverage.rank_dim, 0, p.coverage.rank).copy_(values);
    } else {
      full.copy_(values);
    }
    FEDFM_ASSIGN_OR_RETURN(protocols::Tensor t, model::FromTorch(full));
    FEDFM_RETURN_IF_ERROR(out.Insert(std::string(prefix) + p.name, std::move(t)));
  }
  return out;
}

absl::StatusOr<TensorMap> StateForward::CurrentState() const {
  torch::NoGradGuard no_grad;
  const torch::Tensor current = flat_.detach().to(torch::kCPU);
  std::unordered_map<std::string, const Piece*> pieces;
  for (const Piece& p : pieces_) pieces[p.name] = &p;
  TensorMap out;
  for (const auto& [name, tensor] : state_) {
    auto it = pieces.find(name);
    if (it == pieces.end()) {
      FEDFM_RETURN_IF_ERROR(out.Insert(name, tensor));
      continue;
    }
    const Piece& p = *it->second;
    torch::Tensor full = model::ToTorch(tensor).to(torch::kFloat, /*non_blocking=*/false, /*copy=*/true);
    torch::Tensor values = current.narrow(0, p.offset, p.numel).view(p.slice_shape);
    if (p.coverage.rank_dim >= 0) {
      full.narrow(p.coverage.rank_dim, 0, p.coverage.rank).copy_(values);
    } else {
      full.copy_(values);
    }
    FEDFM_ASSIGN_OR_RETURN(protocols::Tensor host, model::FromTorch(full.contiguous()));
    FEDFM_RETURN_IF_ERROR(out.Insert(name, std::move(host)));
  }
  return out;
}

absl::StatusOr<TensorMap> InitTrainableState(const model::Model& model, const StateLayout& layout, uint64_t seed) {
  const model::ModelConfig& config = model.config();
  if (layout.full_weight_blocks > config.n_layers) {
    return absl::InvalidArgumentError(absl::StrCat("full weights of ", layout.full_weight_blocks,
                                                   " top blocks asked, but the model has ", config.n_layers));
  }
  FEDFM_ASSIGN_OR_RETURN(TensorMap state, InitAdapterState(config, layout, seed));
  if (layout.full_weight_blocks == 0) {
    return layout.optimizer_state ? protocols::WithZeroOptimizerState(state) : state;
  }
  const int first = static_cast<int>(config.n_layers) - layout.full_weight_blocks;
  TensorMap out;
  // Block weights after the LoRA tensors, before the head.
  for (const auto& [name, tensor] : state) {
    if (name != kScoreHeadName) FEDFM_RETURN_IF_ERROR(out.Insert(name, tensor));
  }
  for (const auto& [name, tensor] : model.NamedParameters()) {
    const int block = BlockOfTensor(name);
    if (block < first) continue;
    torch::Tensor value;
    {
      torch::NoGradGuard no_grad;
      value = tensor.detach().to(torch::kCPU, torch::kFloat, /*non_blocking=*/false, /*copy=*/true).contiguous();
    }
    FEDFM_ASSIGN_OR_RETURN(protocols::Tensor host, model::FromTorch(value));
    FEDFM_RETURN_IF_ERROR(out.Insert(name, std::move(host)));
  }
  if (const protocols::Tensor* head = state.Find(kScoreHeadName)) {
    FEDFM_RETURN_IF_ERROR(out.Insert(kScoreHeadName, *head));
  }
  return layout.optimizer_state ? protocols::WithZeroOptimizerState(out) : out;
}

absl::StatusOr<model::NamedTensors> MergeState(const model::Model& base, const TensorMap& state, double scale) {
  FEDFM_ASSIGN_OR_RETURN(ParsedState parsed, ParseState(base.config(), state));
  torch::NoGradGuard no_grad;
  const torch::Device device = base.device();
  std::unordered_map<std::string, std::pair<const std::string*, const std::string*>> lora_of_weight;
  for (const auto& [key, names] : parsed.lora) {
    lora_of_weight[model::ProjectionModulePath(key.first, key.second) + ".weight"] = {&names.first, &names.second};
  }
  std::set<std::string> full(parsed.full.begin(), parsed.full.end());
  model::NamedTensors merged;
  for (auto& [name, weight] : base.NamedParameters()) {
    torch::Tensor w = weight;
    const bool replaced = full.count(name) > 0;
    if (replaced) w = ToDevice(state.at(name), device, torch::kFloat);
    auto lora = lora_of_weight.find(name);
    if (lora != lora_of_weight.end()) {
      torch::Tensor a = ToDevice(state.at(*lora->second.first), device, torch::kFloat);
      torch::Tensor b = ToDevice(state.at(*lora->second.second), device, torch::kFloat);
      w = torch::addmm(w.to(torch::kFloat), b, a, /*beta=*/1, /*alpha=*/scale);
    }
    if (replaced || lora != lora_of_weight.end()) w = w.to(weight.scalar_type()).contiguous();
    merged.emplace_back(name, w);
  }
  return merged;
}

absl::StatusOr<model::NamedTensors> UnmergeState(const model::NamedTensors& merged, const TensorMap& state,
                                                 double scale) {
  torch::NoGradGuard no_grad;
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < merged.size(); ++i) index[merged[i].first] = i;
  model::NamedTensors out = merged;
  std::set<std::string> done;
  for (const auto& [name, tensor] : state) {
    LoraTensorId id;
    if (!ParseLoraTensorName(name, &id)) continue;
    const std::string weight = model::ProjectionModulePath(id.layer, id.projection) + ".weight";
    if (!done.insert(weight).second) continue;
    auto it = index.find(weight);
    if (it == index.end()) {
      return absl::InvalidArgumentError(absl::StrCat("merged weights lack \"", weight, "\" (for \"", name, "\")"));
    }
    const protocols::Tensor* a = state.Find(LoraTensorName(id.layer, id.projection, LoraMatrix::kA));
    const protocols::Tensor* b = state.Find(LoraTensorName(id.layer, id.projection, LoraMatrix::kB));
    if (a == nullptr || b == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("LoRA module of \"", weight, "\" lacks A or B"));
    }
    torch::Tensor& w = out[it->second].second;
    if (w.dim() != 2 || a->shape().size() != 2 || b->shape().size() != 2 || b->shape()[0] != w.size(0) ||
        a->shape()[1] != w.size(1) || a->shape()[0] != b->shape()[1]) {
      return absl::InvalidArgumentError(absl::StrCat("merged weight \"", weight, "\" does not fit its LoRA module (A ",
                                                     ShapeText(a->shape()), ", B ", ShapeText(b->shape()), ")"));
    }
    const torch::Tensor ta = ToDevice(*a, w.device(), torch::kFloat);
    const torch::Tensor tb = ToDevice(*b, w.device(), torch::kFloat);
    w = torch::addmm(w.to(torch::kFloat), tb, ta, /*beta=*/1, /*alpha=*/-scale).to(w.scalar_type()).contiguous();
  }
  return out;
}

}  // namespace fedfm::peft
