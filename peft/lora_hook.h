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
// addition run as one addmm. Projections that read the same input (q, k, v;
// gate, up) share one product with their stacked A's, x [A_q; A_k; A_v]^T,
// computed at the group's first projection and reused by the others while
// the input is the same tensor (modules with dropout keep their own
// product, as each has its own mask in PEFT).
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
    int64_t group_row = 0;  // first row of a in its group's stacked A
  };
  // The stacked A of the projections of one layer that share an input.
  struct Group {
    bool built = false;
    torch::Tensor a;  // [sum of r, in]; undefined when fewer than two members
  };
  // The last shared product, reused while the input tensor is the same.
  struct SharedProduct {
    int group = -1;  // index into groups_
    torch::Tensor input, xa;
  };
  const Module* Find(int layer, model::Projection projection) const;
  // Builds groups_[index] on first use (under the caller's grad mode).
  const Group& BuildGroup(int layer, int group) const;

  int num_layers_;
  double scale_;
  double dropout_;
  mutable std::optional<at::Generator> generator_;
  mutable std::vector<Module> modules_;  // [num_layers * kNumProjections]; a undefined = not covered
  mutable std::vector<Group> groups_;    // [num_layers * kNumGroups]
  mutable SharedProduct shared_;
};

}  // namespace fedfm::peft

#endif  // FEDFM_PEFT_LORA_HOOK_H_
