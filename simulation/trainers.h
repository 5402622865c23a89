// Where the virtual clients' trainers come from. A TrainerFactory owns what
// every client shares (the frozen base model, loaded once) and makes a
// Trainer per client and method while that client is sampled; the trainers
// are the same client::Trainer implementations a deployed device runs.
#ifndef FEDFM_SIMULATION_TRAINERS_H_
#define FEDFM_SIMULATION_TRAINERS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "client/testing/fake_trainer.h"
#include "client/trainer.h"
#include "protocols/config/options.h"
#include "protocols/device.h"
#include "protocols/tensor.h"

namespace fedfm::simulation {

// What binds a thread to a worker slot while it lives (TrainerFactory::EnterSlot).
class SlotScope {
 public:
  virtual ~SlotScope() = default;
};

// Thread-safe: Create and EnterSlot may be called from several threads at once.
class TrainerFactory {
 public:
  virtual ~TrainerFactory() = default;

  // A trainer for one round of registered client `client` with `method`
  // (its own draws seeded from the run seed and `client`).
  virtual absl::StatusOr<std::unique_ptr<client::Trainer>> Create(protocols::Method method, uint64_t client) = 0;

  // Called by a thread about to train or evaluate in worker slot `slot`
  // (0 <= slot < the simulation's workers; one thread per slot at a time);
  // the binding holds until the result is destroyed. The real trainers run a
  // slot's work on a CUDA stream of its own when the model is on CUDA, so
  // that clients training at once overlap on the GPU. Null: nothing to bind.
  virtual std::unique_ptr<SlotScope> EnterSlot(int slot) {
    (void)slot;
    return nullptr;
  }

  // The run's initial global trainable state.
  virtual absl::StatusOr<protocols::TensorMap> InitialState() = 0;
  // The model's sizes, for the method policy and the virtual clock.
  virtual protocols::ModelDims dims() const = 0;
  // Bytes every client shares (the base model), counted once.
  virtual uint64_t shared_bytes() const = 0;
  // One line for reports: "stories260K (260,032 parameters), LibTorch trainers".
  virtual std::string description() const = 0;
};

// The model's sizes from the checkpoint's header (no weights loaded).
absl::StatusOr<protocols::ModelDims> ReadModelDims(const protocols::RunConfig& config);

// The real trainers (client::LoraTrainer, PartialLayerTrainer,
// ZerothOrderTrainer) over the model of `config` (model.path, model.dtype,
// model.device), loaded once (with model.device = "cuda", once on every
// visible GPU) and shared by every client. `num_labels` > 0: the state
// carries a classification head.
absl::StatusOr<std::unique_ptr<TrainerFactory>> MakeModelTrainerFactory(const protocols::RunConfig& config,
                                                                        int num_labels);

// FakeTrainers (client/testing/fake_trainer.h) over the real global-state
// layout of `dims`: no model is trained, seed scalars are replayable by the
// coordinator. For tests and for scale runs of the coordinator path.
// `quality` per method: how well an update points at the shared target
// (LoRA, partial, zeroth order).
struct FakeTrainerSettings {
  double lora_quality = 1.0;
  double partial_quality = 0.8;
  double zo_quality = 0.6;
  uint64_t target_seed = 1;
};
absl::StatusOr<std::unique_ptr<TrainerFactory>> MakeFakeTrainerFactory(const protocols::RunConfig& config,
                                                                       const protocols::ModelDims& dims,
                                                                       const FakeTrainerSettings& settings = {});

}  // namespace fedfm::simulation

#endif  // FEDFM_SIMULATION_TRAINERS_H_
