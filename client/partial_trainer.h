// PartialLayerTrainer: backprop through the top k blocks only (DESIGN.md).
// The blocks below run without an autograd graph, so activation memory
// covers k blocks. What trains in those blocks: their LoRA adapters (at the
// client's rank), or with task.partial_full_weights their full weights (the
// global state then holds them, peft/state.h). k is task.top_blocks, or
// peft::TopBlocksForRound(options.partial, task.round, L) when the task
// leaves it 0 (progressive training).
//
// Thread safety: as LoraTrainer.
#ifndef FEDFM_CLIENT_PARTIAL_TRAINER_H_
#define FEDFM_CLIENT_PARTIAL_TRAINER_H_

#include <cstdint>
#include <memory>

#include "client/train_loop.h"
#include "client/trainer.h"

namespace fedfm::client {

class PartialLayerTrainer final : public Trainer {
 public:
  // `seed`: as LoraTrainer's.
  PartialLayerTrainer(std::shared_ptr<const model::Model> model, PeftTrainerOptions options, uint64_t seed);

  // task.method must be kPartial.
  absl::StatusOr<protocols::Update> Train(const protocols::Task& task, TrainableState& state, Dataset& data) override;
  absl::StatusOr<protocols::EvalReport> Evaluate(const protocols::Task& task, const TrainableState& state,
                                                  Dataset& data) override;

  // The k this trainer uses for `task`.
  int TopBlocks(const protocols::Task& task) const;

 private:
  std::shared_ptr<const model::Model> model_;
  PeftTrainerOptions options_;
  uint64_t seed_;
};

}  // namespace fedfm::client

#endif  // FEDFM_CLIENT_PARTIAL_TRAINER_H_
