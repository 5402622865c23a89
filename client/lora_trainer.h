// LoraTrainer: backprop on LoRA adapters over a shared frozen base model
// (DESIGN.md). A client of rank r_i < r_max trains the leading r_i rank
// slices of every adapter and leaves the rest bit-identical; with
// lora.freeze_a (FFA-LoRA) only B trains. See peft/state.h for the state
// layout and the scaling choice, client/train_loop.h for the loop.
//
// Thread safety: a LoraTrainer serves one call at a time; any number of
// trainers may train at once on different threads over one Model.
#ifndef FEDFM_CLIENT_LORA_TRAINER_H_
#define FEDFM_CLIENT_LORA_TRAINER_H_

#include <cstdint>
#include <memory>

#include "client/train_loop.h"
#include "client/trainer.h"

namespace fedfm::client {

class LoraTrainer final : public Trainer {
 public:
  // `seed` seeds the trainer's own draws (batch order, dropout) together with
  // each task's round_seed; give every client its own, e.g.
  // model::DeriveSeed(run_seed, client index).
  LoraTrainer(std::shared_ptr<const model::Model> model, PeftTrainerOptions options, uint64_t seed);

  // task.method must be kLora (or kAuto); task.lora_rank = r_i (0 = r_max).
  absl::StatusOr<protocols::Update> Train(const protocols::Task& task, TrainableState& state, Dataset& data) override;
  absl::StatusOr<protocols::EvalReport> Evaluate(const protocols::Task& task, const TrainableState& state,
                                                  Dataset& data) override;

 private:
  std::shared_ptr<const model::Model> model_;
  PeftTrainerOptions options_;
  uint64_t seed_;
};

}  // namespace fedfm::client

#endif  // FEDFM_CLIENT_LORA_TRAINER_H_
