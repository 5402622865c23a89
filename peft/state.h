// The global trainable state of a PEFT run: names, layout, initialisation,
// which part of it a client trains (its public coverage), and the
// progressive partial-layer schedule. Torch-free, so that the coordinator can
// build and reason about the state without LibTorch.
//
// Layout (a protocols::TensorMap, float32, in this order):
//   LoRA, for every block i and every target projection p (HF PEFT names, so
//   the state IS the content of adapter_model.safetensors):
//     base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_A.weight  [r_max, in]
//     base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_B.weight  [out, r_max]
//     base_model.model.model.layers.{i}.mlp.{gate,up,down}_proj.lora_{A,B}.weight
//   Full weights of the top blocks (partial-layer training with
//   partial.full_weights), under the base checkpoint's HF names:
//     model.layers.{i}.input_layernorm.weight, model.layers.{i}.self_attn.q_proj.weight, ...
//   A classification head (sequence classification; PEFT's modules_to_save
//   "score", saved without the adapter name):
//     base_model.model.score.weight  [C, D]
//
// The forward of the global state is base + overrides + adapters:
//   y = x W_i^T + s * (x A^T) B^T,  s = alpha / r_max  (or alpha / sqrt(r_max), rsLoRA)
// where W_i is the state's full weight of block i when present, else the base.
//
// Heterogeneous ranks. A client of rank r_i < r_max trains only the leading
// r_i rank slices (A rows [0, r_i), B columns [0, r_i)); its forward still
// uses the whole rank-r_max adapter (the other slices frozen) at the global
// scale s = alpha / r_max. So every client, whatever its rank, takes a step
// on the same function (the global model), restricted to a public block of
// coordinates, and the coverage-weighted mean of such steps is a meaningful
// block-coordinate update of that function. Scaling a rank-r_i client by
// alpha / r_i (HetLoRA-style truncation) would make the same slice values
// mean a different function on every client, and the aggregate would move
// the global model by r_i / r_max of what each client measured.
//
// FFA-LoRA (freeze_a): A keeps its seeded initial values forever and only B
// trains; then B A is linear in the trained values, so averaging the B's is
// exact averaging of the clients' weight updates.
#ifndef FEDFM_PEFT_STATE_H_
#define FEDFM_PEFT_STATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/config.h"
#include "protocols/config/options.h"
#include "protocols/tensor.h"
#include "protocols/update.h"

namespace fedfm::peft {

// PEFT's prefix of every tensor it saves for a causal LM.
inline constexpr char kPeftPrefix[] = "base_model.model.";
// The classification head's name in the state and in adapter files.
inline constexpr char kScoreHeadName[] = "base_model.model.score.weight";

enum class LoraMatrix { kA, kB };

// "base_model.model.model.layers.{layer}.self_attn.q_proj.lora_A.weight", ...
std::string LoraTensorName(int layer, model::Projection projection, LoraMatrix matrix);

struct LoraTensorId {
  int layer = 0;
  model::Projection projection = model::Projection::kQ;
  LoraMatrix matrix = LoraMatrix::kA;
};
// Parses a LoRA tensor name of the layout above; false for any other name.
bool ParseLoraTensorName(const std::string& name, LoraTensorId* id);

// The block a state tensor belongs to: i when the name contains
// "layers.{i}.", else -1 (a head). The coordinator's coverage rule uses the
// same convention.
int BlockOfTensor(const std::string& name);

// The HF names of block `layer`'s full weights (norms, projections, biases),
// in checkpoint order.
std::vector<std::string> BlockWeightNames(const model::ModelConfig& config, int layer);

// The LoRA hyperparameters of a run.
struct LoraSpec {
  int rank = 8;  // r_max, the rank of the global adapter
  double alpha = 16.0;
  double dropout = 0.0;
  bool rslora = false;   // s = alpha / sqrt(r_max) instead of alpha / r_max
  bool freeze_a = false; // FFA-LoRA
  std::vector<model::Projection> targets = {model::Projection::kQ, model::Projection::kK, model::Projection::kV,
                                            model::Projection::kO};

  // s: alpha / r_max, or alpha / sqrt(r_max) with rsLoRA.
  double Scale() const;
  bool Targets(model::Projection projection) const;
};

// The LoRA scale s: alpha / r, or alpha / sqrt(r) with rsLoRA; 0 when r < 1.
double LoraScale(double alpha, int rank, bool rslora);

// InvalidArgument naming the key ("peft.lora.targets", ...) for an unknown
// projection name, a duplicate, no targets, or a value out of range.
absl::StatusOr<LoraSpec> LoraSpecFromOptions(const protocols::LoraOptions& options);

// What the global state holds.
struct StateLayout {
  LoraSpec lora;
  bool lora_adapters = true;     // LoRA on every block and target
  int full_weight_blocks = 0;    // full weights of the top this-many blocks (0 = none)
  int num_labels = 0;            // > 0: a classification head [num_labels, D]
  // AdamW moments of every tensor and optimizer.step after them
  // (train.optimizer_state = "global"; protocols/optimizer_state.h).
  bool optimizer_state = false;
};

// The initial state of `layout` for a model of `config`, except the full
// block weights (their initial values are the base model's; see
// peft/trainable.h InitTrainableState): A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's
// kaiming_uniform_(a = sqrt(5))), B = 0, head ~ N(0, 0.02^2). Every tensor
// is drawn from its own stream, DeriveSeed(seed, its name), so a tensor's
// values do not depend on which other tensors exist. FEDFM_CHECKs a valid
// config; InvalidArgument for a rank < 1.
absl::StatusOr<protocols::TensorMap> InitAdapterState(const model::ModelConfig& config, const StateLayout& layout,
                                                      uint64_t seed);

// What a client trains in one round.
struct TrainRequest {
  protocols::Method method = protocols::Method::kLora;  // kLora or kPartial (kAuto = kLora)
  int lora_rank = 0;         // r_i; 0 or >= r_max: the whole rank
  int top_blocks = 0;        // kPartial: k (>= 1)
  bool full_weights = false; // kPartial: train the top blocks' full weights instead of their adapters
  bool freeze_a = false;     // FFA-LoRA: never train lora_A
};

// The coverage a client of `request` trains in `state` (of a model with
// `num_layers` blocks), by the naming convention above:
//   kLora     every LoRA tensor, leading lora_rank slices; heads
//   kPartial  blocks >= num_layers - top_blocks: their LoRA tensors at
//             lora_rank, or with full_weights their non-LoRA tensors whole; heads
// minus every lora_A tensor under freeze_a. Optimizer-state tensors are never
// part of it (protocols::WithOptimizerStateCoverage adds those). Matches the coordinator's
// DefaultCoverage (except freeze_a, which it does not know of).
// InvalidArgument when the result covers nothing or the request is out of range.
absl::StatusOr<protocols::Coverage> TrainedCoverage(const protocols::TensorMap& state, const TrainRequest& request,
                                                    int num_layers);

// The first block that trains under `coverage` (the lowest block of a covered
// tensor), or num_layers when only heads train: every block below it can run
// without building an autograd graph.
int FirstTrainedBlock(const protocols::Coverage& coverage, int num_layers);

// Progressive partial-layer training: k for training round `round` (0-based):
//   min(k_max, top_blocks + floor(round / progressive_every) * progressive_step)
// with k_max = progressive_max (0: num_layers), k always in [1, num_layers];
// progressive_every = 0 keeps k = top_blocks. Pure; the coordinator calls it.
int TopBlocksForRound(const protocols::PartialOptions& options, int64_t round, int num_layers);

// Trainable parameters of a rank-`rank` adapter under `spec` on a model of
// `config` (stories260K, rank 4, all seven projections: 23,120).
int64_t LoraParameterCount(const model::ModelConfig& config, const LoraSpec& spec, int rank);

}  // namespace fedfm::peft

#endif  // FEDFM_PEFT_STATE_H_
