#include "peft/lora_hook.h"

#include "protocols/check.h"

namespace fedfm::peft {
namespace {

// Projections that read the same input: q, k, v | o | gate, up | down.
constexpr int kNumGroups = 4;
int GroupOf(model::Projection p) {
  switch (p) {
    case model::Projection::kQ:
    case model::Projection::kK:
    case model::Projection::kV:
      return 0;
    case model::Projection::kO:
      return 1;
    case model::Projection::kGate:
    case model::Projection::kUp:
      return 2;
    case model::Projection::kDown:
      return 3;
  }
  return 3;
}

}  // namespace

LoraHook::LoraHook(int num_layers, double scale, double dropout, std::optional<at::Generator> generator)
    : num_layers_(num_layers),
      scale_(scale),
      dropout_(dropout),
      generator_(std::move(generator)),
      modules_(static_cast<size_t>(num_layers) * model::kNumProjections),
      groups_(static_cast<size_t>(num_layers) * kNumGroups) {
  FEDFM_CHECK(num_layers >= 0);
  FEDFM_CHECK_MSG(dropout >= 0 && dropout < 1, "LoRA dropout must be in [0, 1)");
  FEDFM_CHECK_MSG(dropout == 0 || generator_.has_value(), "LoRA dropout needs a generator");
}

void LoraHook::Set(int layer, model::Projection projection, torch::Tensor a, torch::Tensor b, bool dropout) {
  FEDFM_CHECK(layer >= 0 && layer < num_layers_);
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(0) == b.size(1), "LoraHook: A ", a.sizes(), " and B ", b.sizes(),
              " do not form a low-rank pair");
  Module& m = modules_[static_cast<size_t>(layer) * model::kNumProjections + static_cast<int>(projection)];
  m.a = std::move(a);
  m.b = std::move(b);
  m.dropout = dropout && dropout_ > 0;
  groups_[static_cast<size_t>(layer) * kNumGroups + GroupOf(projection)] = Group{};
  shared_ = SharedProduct{};
}

void LoraHook::Clear() {
  for (Module& m : modules_) m = Module{};
  for (Group& g : groups_) g = Group{};
  shared_ = SharedProduct{};
}

const LoraHook::Group& LoraHook::BuildGroup(int layer, int group) const {
  Group& g = groups_[static_cast<size_t>(layer) * kNumGroups + group];
  if (g.built) return g;
  g.built = true;
  std::vector<Module*> members;
  for (model::Projection p : model::kAllProjections) {
    Module& m = modules_[static_cast<size_t>(layer) * model::kNumProjections + static_cast<int>(p)];
    if (GroupOf(p) == group && m.a.defined() && !m.dropout) members.push_back(&m);
  }
  if (members.size() < 2) return g;
  std::vector<torch::Tensor> as;
  int64_t row = 0;
  for (Module* m : members) {
    m->group_row = row;
    row += m->a.size(0);
    as.push_back(m->a);
  }
  g.a = torch::cat(as, 0);
  return g;
}

const LoraHook::Module* LoraHook::Find(int layer, model::Projection projection) const {
  if (layer < 0 || layer >= num_layers_) return nullptr;
  const Module& m = modules_[static_cast<size_t>(layer) * model::kNumProjections + static_cast<int>(projection)];
  return m.a.defined() ? &m : nullptr;
}

bool LoraHook::Covers(int layer, model::Projection projection) const { return Find(layer, projection) != nullptr; }

torch::Tensor LoraHook::Apply(int layer, model::Projection projection, const torch::Tensor& input,
                              const torch::Tensor& base_output) const {
  const Module* m = Find(layer, projection);
  FEDFM_CHECK(m != nullptr);
  const int64_t in = input.size(-1), out = base_output.size(-1);
  TORCH_CHECK(m->a.size(1) == in && m->b.size(0) == out, "LoraHook: layer ", layer, " ",
              model::ProjectionName(projection), ": adapter A ", m->a.sizes(), ", B ", m->b.sizes(),
              " do not fit input width ", in, " and output width ", out);
  torch::Tensor x = input.reshape({-1, in});  // [N, in], N = B * T
  torch::Tensor xa;                           // [N, r]
  if (m->dropout) {
    torch::Tensor keep = torch::empty_like(x).bernoulli_(1.0 - dropout_, *generator_);
    xa = torch::mm(x * keep * (1.0 / (1.0 - dropout_)), m->a.t());
  } else {
    const int group = GroupOf(projection);
    const Group& g = BuildGroup(layer, group);
    if (!g.a.defined()) {
      xa = torch::mm(x, m->a.t());
    } else {
      const int index = layer * kNumGroups + group;
      if (shared_.group != index || !shared_.input.is_same(input)) {
        // Holding `input` keeps its address from being reused by another tensor.
        shared_ = SharedProduct{index, input, torch::mm(x, g.a.t())};  // [N, sum of r]
      }
      xa = shared_.xa.narrow(1, m->group_row, m->a.size(0));
    }
  }
  // base + s * xa B^T in one kernel: [N, out].
  torch::Tensor y = torch::addmm(base_output.reshape({-1, out}), xa, m->b.t(), /*beta=*/1, /*alpha=*/scale_);
  return y.view(base_output.sizes());
}

}  // namespace fedfm::peft
