// FakeTrainer: a deterministic stand-in for the real trainers, for tests of
// the client runtime, the round engine and the coordinator benchmark. No
// model, no LibTorch: the "model" is the trainable state itself and the loss
// is its mean squared distance to a hidden target state T (the same for
// every client built with the same target_seed):
//
//   loss(θ) = mean over every element of (θ - T)^2
//
// Dense tasks (LoRA, partial, dense zeroth order): over task.coverage,
//   delta = quality * step * (T - θ) + (1 - quality) * noise
// where step = min(1, task.learning_rate * task.local_steps) and noise is
// uniform in [-noise_scale, noise_scale] from seed f(task.round_seed). So
// aggregating such updates moves the global state towards T and the loss
// falls, faster for higher quality.
// Seed-scalar tasks: s_k = quality * <θ - T, z_k> / numel + (1 - quality) *
// noise, with z_k the noise of seed pool slot k as `direction` regenerates
// it: replaying -lr * mean(s_k) z_k then descends the loss too.
//
// num_examples = local_steps * batch_size * grad_accumulation, scaled by
// `examples_scale` (so clients can weigh differently). Metrics: train_loss =
// loss(θ) before the step (over the whole state). Evaluate: eval_loss =
// loss(θ), eval_accuracy = exp(-eval_loss).
#ifndef FEDFM_CLIENT_TESTING_FAKE_TRAINER_H_
#define FEDFM_CLIENT_TESTING_FAKE_TRAINER_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "client/trainer.h"

namespace fedfm::client {

// z_k for seed `seed` over `like`'s tensors (same names and shapes, F32).
using SeedDirection = std::function<absl::StatusOr<protocols::TensorMap>(uint64_t seed,
                                                                         const protocols::TensorMap& like)>;

struct FakeTrainerOptions {
  uint64_t target_seed = 1;    // T: uniform in [-target_scale, target_scale]
  double target_scale = 0.5;
  double quality = 1.0;        // in [0, 1]
  double noise_scale = 0.01;
  double examples_scale = 1.0;
  // Required for seed-scalar tasks; e.g. zeroth_order's Gaussian noise.
  SeedDirection direction;
  // Fails Train with this status when not OK (error-path tests).
  absl::Status fail_with = absl::OkStatus();
};

class FakeTrainer final : public Trainer {
 public:
  explicit FakeTrainer(FakeTrainerOptions options = {});

  absl::StatusOr<protocols::Update> Train(const protocols::Task& task, TrainableState& state, Dataset& data) override;
  absl::StatusOr<protocols::EvalReport> Evaluate(const protocols::Task& task, const TrainableState& state,
                                                  Dataset& data) override;

  // The target T for `like` (same names and shapes, F32).
  protocols::TensorMap Target(const protocols::TensorMap& like) const;
  // loss(θ) as defined above.
  double Loss(const protocols::TensorMap& state) const;

  int trained() const { return trained_; }
  int evaluated() const { return evaluated_; }

 private:
  FakeTrainerOptions options_;
  int trained_ = 0;
  int evaluated_ = 0;
};

}  // namespace fedfm::client

#endif  // FEDFM_CLIENT_TESTING_FAKE_TRAINER_H_
