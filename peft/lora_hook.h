// LoraHook: LoRA as a model::ProjectionHook, so that the frozen base model
// stays shared (const, never copied) while each client adds its own adapter
// to the forward pass:
//
//   y = base(x) + s * (dropout(x) A^T) B^T
//
// B = batch, T = tokens, in/out = the projection's widths, r = rank.
// A: [r, in], B: [out, r], both in the compute dtype of the model (the
// caller casts; under CUDA autocast float32 is fine). The A-then-B order
// keeps the extra work at O(B T r (in + out)); the second product and the
// addition run as one addmm.
//
// Thread safety: a hook serves one Forward at a time (it draws dropout
// masks from its own generator). Different hooks on one shared Model may run
// on different threads.
#ifndef FEDFM_PEFT_LORA_HOOK_H_
#define FEDFM_PEFT_LORA_HOOK_H_

#include <torch/torch.h>

#include <optional>
#include <vector>

#include "model/transformer.h"

namespace fedfm::peft {

class LoraHook final : public model::ProjectionHook {
 public:
  // `scale` = s. With dropout > 0, modules set with dropout = true drop
  // input elements with probability `dropout` (scaling the rest by
  // 1 / (1 - dropout)), drawing from `generator`, which must then be set.
  LoraHook(int num_layers, double scale, double dropout = 0.0, std::optional<at::Generator> generator = std::nullopt);

  // Adds (or replaces) the adapter of (layer, projection). a: [r, in], b: [out, r].
  void Set(int layer, model::Projection projection, torch::Tensor a, torch::Tensor b, bool dropout = false);
  void Clear();

  bool Covers(int layer, model::Projection projection) const override;
  torch::Tensor Apply(int layer, model::Projection projection, const torch::Tensor& input,
                      const torch::Tensor& base_output) const override;

  double scale() const { return scale_; }

 private:
  struct Module {
    torch::Tensor a, b;
    bool dropout = false;
  };
  const Module* Find(int layer, model::Projection projection) const;

  int num_layers_;
  double scale_;
  double dropout_;
  mutable std::optional<at::Generator> generator_;
  std::vector<Module> modules_;  // [num_layers * kNumProjections]; a undefined = not covered
};

}  // namespace fedfm::peft

#endif  // FEDFM_PEFT_LORA_HOOK_H_
