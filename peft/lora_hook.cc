#include "peft/lora_hook.h"

#include "protocols/check.h"

namespace fedfm::peft {

LoraHook::LoraHook(int num_layers, double scale, double dropout, std::optional<at::Generator> generator)
    : num_layers_(num_layers),
      scale_(scale),
      dropout_(dropout),
      generator_(std::move(generator)),
      modules_(static_cast<size_t>(num_layers) * model::kNumProjections) {
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
}

void LoraHook::Clear() {
  for (Module& m : modules_) m = Module{};
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
  if (m->dropout) {
    torch::Tensor keep = torch::empty_like(x).bernoulli_(1.0 - dropout_, *generator_);
    x = x * keep * (1.0 / (1.0 - dropout_));
  }
  torch::Tensor xa = torch::mm(x, m->a.t());  // [N, r]
  // base + s * xa B^T in one kernel: [N, out].
  torch::Tensor y = torch::addmm(base_output.reshape({-1, out}), xa, m->b.t(), /*beta=*/1, /*alpha=*/scale_);
  return y.view(base_output.sizes());
}

}  // namespace fedfm::peft
