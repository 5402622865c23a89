#include "client/partial_trainer.h"

#include "absl/strings/str_cat.h"
#include "model/transformer.h"
#include "protocols/config/config.h"

namespace fedfm::client {

PartialLayerTrainer::PartialLayerTrainer(std::shared_ptr<const model::Model> model, PeftTrainerOptions options,
                                         uint64_t seed)
    : model_(std::move(model)), options_(std::move(options)), seed_(seed) {}

int PartialLayerTrainer::TopBlocks(const protocols::Task& task) const {
  if (task.top_blocks > 0) return task.top_blocks;
  return peft::TopBlocksForRound(options_.partial, task.round, static_cast<int>(model_->config().n_layers));
}

absl::StatusOr<protocols::Update> PartialLayerTrainer::Train(const protocols::Task& task, TrainableState& state,
                                                             Dataset& data) {
  if (task.method != protocols::Method::kPartial) {
    return absl::InvalidArgumentError(
        absl::StrCat("PartialLayerTrainer cannot run a \"", protocols::MethodName(task.method), "\" task"));
  }
  if (model_ == nullptr) return absl::FailedPreconditionError("trainer has no model");
  peft::TrainRequest request;
  request.method = protocols::Method::kPartial;
  request.lora_rank = task.lora_rank;
  request.top_blocks = TopBlocks(task);
  request.full_weights = task.partial_full_weights;
  request.freeze_a = options_.lora.freeze_a;
  absl::StatusOr<protocols::Update> update = TrainPeft(model_, options_, seed_, task, request, state, data);
  if (update.ok()) update->metrics["top_blocks"] = request.top_blocks;
  return update;
}

absl::StatusOr<protocols::EvalReport> PartialLayerTrainer::Evaluate(const protocols::Task& task,
                                                                    const TrainableState& state, Dataset& data) {
  return EvaluatePeft(model_, options_, task, state, data);
}

}  // namespace fedfm::client
