// StateForward: the global trainable state (peft/state.h) applied to a
// shared frozen base model, with a chosen part of it (a coverage) trainable.
// This is where freezing happens:
//   - the trained slices live in ONE flat float32 leaf tensor (parameters(),
//     requires_grad), so an optimizer step, gradient clipping and the FedProx
//     term are a few whole-buffer operations whatever the number of modules;
//   - everything else (the base model, the LoRA slices and tensors outside
//     the coverage, full block weights not trained) is a constant;
//   - blocks below the lowest trained block run without an autograd graph
//     (ForwardOptions::first_trainable_block), so activation memory covers
//     only the blocks that train.
//
// Per forward pass: Materialize() rebuilds the effective tensors (views of
// the flat buffer, concatenated with the frozen rank slices of
// heterogeneous-rank clients, cast to the compute dtype) and the hook /
// block overrides / head that ForwardOptions() hands to Model::Forward.
//
// Shapes: P = trainable parameters; LoRA A [r_max, in], B [out, r_max].
// Thread safety: one StateForward serves one thread; many StateForwards may
// share one Model across threads. Errors from LibTorch are thrown (c10::Error)
// except from Create, which returns a Status.
#ifndef FEDFM_PEFT_TRAINABLE_H_
#define FEDFM_PEFT_TRAINABLE_H_

#include <torch/torch.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/transformer.h"
#include "peft/lora_hook.h"
#include "peft/state.h"
#include "protocols/tensor.h"
#include "protocols/update.h"

namespace fedfm::peft {

struct StateForwardOptions {
  // LoRA scaling; r_max comes from the state's tensors.
  double alpha = 16.0;
  bool rslora = false;
  // Dropout on the inputs of trained LoRA modules while training().
  double dropout = 0.0;
  uint64_t dropout_seed = 0;
  // The dtype the adapters are cast to for the forward: the model's dtype
  // (default), or float32 under CUDA autocast.
  std::optional<torch::ScalarType> compute_dtype;
  // Classification head pooling (when the state has a head).
  model::Pooling pooling = model::Pooling::kLastToken;
};

class StateForward {
 public:
  // Validates `state` against `model` (every tensor a LoRA tensor of the
  // model's shapes with one common rank, a full weight of a block, or a head
  // [C, D]; A and B in pairs) and `trained` against `state` (InvalidArgument
  // naming the tensor), copies the trained slices into the flat buffer and
  // the rest to the model's device.
  static absl::StatusOr<std::unique_ptr<StateForward>> Create(std::shared_ptr<const model::Model> model,
                                                              const protocols::TensorMap& state,
                                                              const protocols::Coverage& trained,
                                                              const StateForwardOptions& options = {});

  // The flat trainable buffer [P] (float32, requires_grad; an empty tensor
  // when nothing trains) and its values at creation.
  torch::Tensor& parameters() { return flat_; }
  const torch::Tensor& initial_parameters() const { return initial_; }
  int64_t num_parameters() const { return flat_.numel(); }

  // Dropout on (training) or off.
  void set_training(bool training) { training_ = training; }
  bool training() const { return training_; }

  // Rebuilds the effective tensors from parameters(). Call before each
  // forward pass whose graph is to reach parameters().
  void Materialize();
  // Options for Model::Forward of the last Materialize(): the LoRA hook,
  // full-weight block overrides, head, first_trainable_block.
  model::ForwardOptions forward_options() const;

  const model::Model& model() const { return *model_; }
  const std::shared_ptr<const model::Model>& shared_model() const { return model_; }
  const protocols::Coverage& coverage() const { return coverage_; }
  // The lowest block with a trained tensor (num_layers when none).
  int first_trainable_block() const { return first_trainable_block_; }
  bool has_head() const { return head_.weight.defined(); }
  int64_t num_labels() const { return has_head() ? head_.weight.size(0) : 0; }
  int lora_rank() const { return lora_rank_; }
  double lora_scale() const { return scale_; }

  // new - old over the coverage: exactly the covered tensors at their full
  // global shapes, zeros outside the covered rank slices, float32 on the host.
  absl::StatusOr<protocols::TensorMap> Delta() const;
  // Per-parameter companions of the trained slices, e.g. optimizer moments
  // (protocols/optimizer_state.h), named `prefix` + the tensor's name:
  // Gather lays the covered slices of `source`'s tensors out like
  // parameters() ([P] float32 on the model's device; InvalidArgument naming a
  // tensor missing or of another shape than the state's); Scatter is the
  // inverse shape of Delta (full shapes, zeros outside the slices, host).
  absl::StatusOr<torch::Tensor> Gather(const protocols::TensorMap& source, std::string_view prefix) const;
  absl::StatusOr<protocols::TensorMap> Scatter(const torch::Tensor& flat, std::string_view prefix) const;
  // The whole state with the trained slices at their current values.
  absl::StatusOr<protocols::TensorMap> CurrentState() const;

 private:
  // One trained tensor (slice) inside the flat buffer.
  struct Piece {
    std::string name;
    protocols::TensorCoverage coverage;
    std::vector<int64_t> full_shape;   // the state tensor's shape
    std::vector<int64_t> slice_shape;  // the trained part's shape
    int64_t offset = 0;
    int64_t numel = 0;
  };
  struct LoraModule {
    int layer = 0;
    model::Projection projection = model::Projection::kQ;
    torch::Tensor a, b;     // frozen values [r, in], [out, r] (float32, device)
    int a_piece = -1, b_piece = -1;  // index into pieces_, -1 = frozen
  };
  struct FullBlock {
    int layer = 0;
    std::vector<std::pair<std::string, torch::Tensor>> tensors;  // name -> frozen value (model dtype, device)
    std::map<std::string, int> pieces;                            // name -> trained piece
    model::BlockWeights weights;                                  // of the last Materialize()
  };

  StateForward(std::shared_ptr<const model::Model> model, const StateForwardOptions& options)
      : model_(std::move(model)), options_(options) {}
  torch::Tensor PieceView(int piece) const;
  // A trained piece's values spliced into its frozen tensor (float32).
  torch::Tensor Splice(int piece, const torch::Tensor& frozen) const;

  std::shared_ptr<const model::Model> model_;
  StateForwardOptions options_;
  protocols::TensorMap state_;  // the state at creation (host)
  protocols::Coverage coverage_;
  std::vector<Piece> pieces_;
  std::vector<LoraModule> lora_;
  std::vector<FullBlock> blocks_;
  torch::Tensor head_frozen_;
  int head_piece_ = -1;
  model::ClassificationHead head_;
  torch::Tensor flat_, initial_;
  int lora_rank_ = 0;
  double scale_ = 0;
  int first_trainable_block_ = 0;
  bool training_ = false;
  torch::ScalarType compute_dtype_ = torch::kFloat;
  std::unique_ptr<LoraHook> hook_;
};

// The initial global state of `layout` on `model`: InitAdapterState plus
// copies (float32) of the top layout.full_weight_blocks blocks' weights, and
// with layout.optimizer_state zero AdamW moments of all of them.
absl::StatusOr<protocols::TensorMap> InitTrainableState(const model::Model& model, const StateLayout& layout,
                                                        uint64_t seed);

// The base model's weights with the state merged in, as new tensors (the
// base is never modified): every LoRA module's weight becomes
// W + scale * B A (W the state's full weight of its block when present,
// else the base's), full block weights replace the base's, in the base's
// dtype (computed in float32). Untouched tensors are the base's own (shared,
// read-only). HF names, checkpoint order. The head, if any, is not part of
// a causal LM checkpoint and is left out.
absl::StatusOr<model::NamedTensors> MergeState(const model::Model& base, const protocols::TensorMap& state,
                                               double scale);
// The inverse on the LoRA modules: W' - scale * B A for every LoRA module of
// `state` (new tensors); other tensors are passed through.
absl::StatusOr<model::NamedTensors> UnmergeState(const model::NamedTensors& merged, const protocols::TensorMap& state,
                                                 double scale);

}  // namespace fedfm::peft

#endif  // FEDFM_PEFT_TRAINABLE_H_
