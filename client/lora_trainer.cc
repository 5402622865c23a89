#include "client/lora_trainer.h"

#include "absl/strings/str_cat.h"
#include "protocols/config/config.h"

namespace fedfm::client {

LoraTrainer::LoraTrainer(std::shared_ptr<const model::Model> model, PeftTrainerOptions options, uint64_t seed)
    : model_(std::move(model)), options_(std::move(options)), seed_(seed) {}

absl::StatusOr<protocols::Update> LoraTrainer::Train(const protocols::Task& task, TrainableState& state,
                                                     Dataset& data) {
  if (task.method != protocols::Method::kLora && task.method != protocols::Method::kAuto) {
    return absl::InvalidArgumentError(
        absl::StrCat("LoraTrainer cannot run a \"", protocols::MethodName(task.method), "\" task"));
  }
  peft::TrainRequest request;
  request.method = protocols::Method::kLora;
  request.lora_rank = task.lora_rank;
  request.freeze_a = options_.lora.freeze_a;
  return TrainPeft(model_, options_, seed_, task, request, state, data);
}

absl::StatusOr<protocols::EvalReport> LoraTrainer::Evaluate(const protocols::Task& task, const TrainableState& state,
                                                            Dataset& data) {
  return EvaluatePeft(model_, options_, task, state, data);
}

}  // namespace fedfm::client
