// ZerothOrderTrainer: backprop-free training of the global trainable state
// (DESIGN.md) with MeZO / SPSA steps: the trained values are perturbed in
// place by noise regenerated from seeds (zeroth_order/), and each step costs
// 2 * perturbations forward passes and no gradient memory. Memory: the
// shared frozen model, inference activations, and the trained set twice (its
// values and its round-start values, which the dense delta needs): for the
// LoRA adapter that is inference + O(1) in the model's size.
//
// What trains (ZoTrainable):
//   kTaskCoverage (default, the federated case): the task's coverage, or the
//     whole state when the task names none. The coordinator gives a
//     zeroth-order client every tensor of the global state (the LoRA
//     adapter, plus a head or full block weights when the state holds them).
//   kTopBlockAdapters: the LoRA tensors of the top `top_blocks` blocks (and a head).
//   kTopBlockWeights / kAllBlockWeights: full weights of the top k / of every
//     block (and a head); the state must hold them (peft::InitTrainableState
//     with full_weight_blocks). The frozen base Model is never written: the
//     trained weights are the client's own float32 copy, inside
//     peft::StateForward's flat buffer, so every block trained this way costs
//     two float32 copies of its weights on top of the shared base.
// Anything but kTaskCoverage must lie inside the task's coverage when it names one.
//
// Noise layout (the contract with the coordinator's seed-pool replay,
// coordinator/round_engine_seed_replay.h and zeroth_order/seed_pool.h):
// element e (flat, row-major, of the FULL global tensor) of the tensor at
// position i of `state` is perturbed by z(seed, tensor_index = i, kind)[e],
// whatever slice of it trains; every change is theta += alpha z with the
// binary32 rounding of docs/zeroth_order_noise.md. So the client's change
// over a round is exactly (in real arithmetic) -lr * sum_k s_k z_k, which is
// what the server's SeedPoolDelta computes from the uploaded s_k.
//
// Update forms, chosen by the task:
//   task.seed_pool non-empty (FedKSeed-style): each perturbation of each step
//     takes its seed from the pool (SeedPool::Pick), and the update is
//     kSeedScalars: the K accumulated projected gradients s_k
//     (SeedScalarAccumulator) + num_examples. Because the server replays
//     every tensor of the global state whole, the trained set must then be
//     the whole state (InvalidArgument otherwise), and weight decay must be 0.
//   otherwise: kDense, delta = new - old over the trained coverage.
//
// Hyperparameters: epsilon, learning rate and perturbations per step come
// from the task (Task::zo_*); noise kind, estimator and weight decay from
// options.zo (they must agree with the coordinator's [zeroth_order] section,
// which the task does not carry). Steps and batch size: the task's, else
// options.train's. Each loss evaluation averages task.grad_accumulation
// micro-batches of batch_size examples (the same ones for L+ and L-), so
// num_examples = steps * accumulation * batch_size, as for the backprop
// trainers. task.weight_decay, grad_clip, fedprox_mu and the optimizer are
// the backprop trainers' and are not used. LoRA dropout is never applied:
// L+ and L- must measure the same function.
//
// Update metrics: train_loss (mean of (L+ + L-) / 2 over the steps),
// train_loss_first, train_loss_last, steps, skipped_steps (non-finite loss:
// theta restored, step skipped), forward_passes, tokens, tokens_per_s,
// train_seconds, trainable_parameters, peak_memory_bytes (-1 unknown),
// projected_grad_abs_mean, perturbations.
//
// Thread safety: a trainer serves one call at a time; any number of trainers
// may run at once on different threads over one shared const Model (each
// call builds its own StateForward and noise; nothing is global).
#ifndef FEDFM_CLIENT_ZEROTH_ORDER_TRAINER_H_
#define FEDFM_CLIENT_ZEROTH_ORDER_TRAINER_H_

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "client/train_loop.h"
#include "client/trainer.h"
#include "peft/state.h"
#include "protocols/config/options.h"

namespace fedfm::client {

enum class ZoTrainable {
  kTaskCoverage,
  kTopBlockAdapters,
  kTopBlockWeights,
  kAllBlockWeights,
};

struct ZerothOrderTrainerOptions {
  // noise ("gaussian" | "rademacher"), estimator ("spsa" | "forward"),
  // weight_decay. epsilon / learning_rate / perturbations are the task's.
  protocols::ZerothOrderOptions zo;
  // local_steps and batch_size for tasks that leave them 0; bf16_autocast (CUDA).
  protocols::TrainOptions train;
  // alpha and rslora (the rank is the state's).
  peft::LoraSpec lora;
  ZoTrainable trainable = ZoTrainable::kTaskCoverage;
  int top_blocks = 1;  // k of kTopBlockAdapters / kTopBlockWeights
  // Mean-pool the final hidden states for a classification head (else the last real token).
  bool mean_pooling = false;
  int eval_batch_size = 16;
  // On return from Train, `state` holds the client's trained values (the
  // whole state, trained slices replaced); otherwise it is left unchanged.
  // Costs one host copy of the state; useful where the dense result of a
  // seed-scalar round is wanted on the client itself.
  bool write_back_state = false;
  // Called after every step, from the training thread. TrainProgress::loss
  // is (L+ + L-) / 2 (the loss for the forward estimator), grad_norm the
  // mean |projected gradient| of the step.
  std::function<void(const TrainProgress&)> on_step;
};

// The step seed of step `step` (0-based) of a round of a trainer built with
// `trainer_seed` on a task with `round_seed`: perturbation p of that step
// uses zeroth_order::PerturbationSeeds(step_seed, P, pool)[p].seed. Exposed
// so that tests can name the noise of a step.
uint64_t ZerothOrderStepSeed(uint64_t trainer_seed, uint64_t round_seed, int step);

class ZerothOrderTrainer final : public Trainer {
 public:
  // `seed` seeds the trainer's own draws (batch order, step seeds) together
  // with each task's round_seed; give every client its own.
  ZerothOrderTrainer(std::shared_ptr<const model::Model> model, ZerothOrderTrainerOptions options, uint64_t seed);

  // task.method must be kZerothOrder. Errors: InvalidArgument (another
  // method, a state that does not fit the model, a trained set outside the
  // task's coverage or, with a seed pool, not the whole state, bad
  // hyperparameters, no training data); FailedPrecondition when every step
  // had a non-finite loss; ResourceExhausted (out of memory); Internal (any
  // other LibTorch failure).
  absl::StatusOr<protocols::Update> Train(const protocols::Task& task, TrainableState& state, Dataset& data) override;
  // Forward passes over data.eval (client/train_loop.h EvaluatePeft).
  absl::StatusOr<protocols::EvalReport> Evaluate(const protocols::Task& task, const TrainableState& state,
                                                  Dataset& data) override;

 private:
  std::shared_ptr<const model::Model> model_;
  ZerothOrderTrainerOptions options_;
  uint64_t seed_;
};

}  // namespace fedfm::client

#endif  // FEDFM_CLIENT_ZEROTH_ORDER_TRAINER_H_
