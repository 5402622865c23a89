// The method policy: which training method, LoRA rank and number of
// trainable top blocks each device gets, from its profile and a cost model of
// the run. The coordinator and the simulation both call it, so a virtual
// device is treated exactly as a real one would be. Pure functions.
#ifndef FEDFM_COORDINATOR_POLICY_H_
#define FEDFM_COORDINATOR_POLICY_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "protocols/config/options.h"
#include "protocols/device.h"

namespace fedfm::coordinator {

// One client's assignment for a round.
struct MethodChoice {
  protocols::Method method = protocols::Method::kLora;
  int lora_rank = 0;   // kLora (and kPartial over adapters): the client's rank r_i <= r_max
  int top_blocks = 0;  // kPartial: k
  uint64_t memory_bytes = 0;    // estimated training peak
  double round_seconds = 0;     // estimated compute + transfer time
};

// Everything of a run the cost model needs.
struct WorkloadShape {
  protocols::ModelDims model;
  int batch_size = 8;
  int seq_len = 64;
  int local_steps = 10;
  int zo_perturbations = 1;
  int zo_seed_pool = 256;       // 0 = dense zeroth-order updates
  int lora_targets_mask = 0xF;  // bit i: projection i of kProjections
  bool partial_full_weights = false;
  // train.optimizer_state = "global": the state carries AdamW's two moments
  // of every tensor (and a step count), which backprop clients send back too.
  bool optimizer_state = false;
};

// Projections LoRA may target, in the order of lora_targets_mask's bits.
inline constexpr const char* kProjections[7] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                "gate_proj", "up_proj", "down_proj"};

WorkloadShape MakeWorkloadShape(const protocols::RunConfig& config, const protocols::ModelDims& model);

// Parameters of a rank-`rank` LoRA adapter over the targets of `shape`, all layers.
int64_t LoraParameterCount(const WorkloadShape& shape, int rank);
// Parameters of `top_blocks` transformer blocks (attention + MLP + norms).
int64_t BlockParameterCount(const protocols::ModelDims& model, int top_blocks);

// Estimated peak training memory in bytes (weights, saved activations,
// trainable state with AdamW moments; zeroth-order: inference only).
uint64_t EstimateMemoryBytes(const WorkloadShape& shape, const MethodChoice& choice);
// Estimated FLOPs per training token: forward 2 FLOPs per weight plus
// attention; LoRA adds one backward for activation gradients; partial adds
// weight gradients for the top k blocks only; zeroth-order is two forwards per
// perturbation.
double EstimateFlopsPerToken(const WorkloadShape& shape, const MethodChoice& choice);
// Bytes a client uploads for this choice (fp32 deltas, or K seed scalars;
// backprop deltas 3x with optimizer_state, for the moments).
uint64_t EstimateUploadBytes(const WorkloadShape& shape, const MethodChoice& choice);
// Bytes of the global trainable state a client downloads (3x with optimizer_state).
uint64_t EstimateDownloadBytes(const WorkloadShape& shape, const protocols::RunConfig& config);
// Compute plus transfer time of one round on `device`.
double EstimateRoundSeconds(const WorkloadShape& shape, const protocols::DeviceProfile& device,
                            const MethodChoice& choice, uint64_t download_bytes);

// The policy. With train.method = "auto": LoRA at the largest offered rank
// that fits the device's memory and the round deadline; below that, partial
// layers with the largest k that fits; below that, zeroth-order when
// inference fits. A method set explicitly in the config (or restricted by the
// device's supported methods) is honoured, with rank/k still fitted.
// FailedPrecondition naming the device and the memory it lacks when nothing
// fits.
absl::StatusOr<MethodChoice> ChooseMethod(const protocols::DeviceProfile& device,
                                          const protocols::RunConfig& config, const WorkloadShape& shape);

}  // namespace fedfm::coordinator

#endif  // FEDFM_COORDINATOR_POLICY_H_
