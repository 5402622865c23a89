// The TrainerFactory of the real LibTorch trainers (LoRA, partial layers,
// zeroth order): the one LibTorch file of the simulation.
#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/lora_trainer.h"
#include "client/partial_trainer.h"
#include "client/train_loop.h"
#include "client/zeroth_order_trainer.h"
#include "model/cuda_streams.h"
#include "model/dataset_rng.h"
#include "model/loader.h"
#include "peft/state.h"
#include "peft/trainable.h"
#include "protocols/status_macros.h"
#include "simulation/trainers.h"

namespace fedfm::simulation {
namespace {

using protocols::Method;

// Seed purposes under run.seed (model::DeriveSeed).
constexpr uint64_t kInitPurpose = 0x53494E49;     // "SINI": the initial global state
constexpr uint64_t kTrainerPurpose = 0x53545252;  // "STRR": a client's trainer draws

class ModelFactory final : public TrainerFactory {
 public:
  ModelFactory(protocols::RunConfig config, std::shared_ptr<const model::Model> model, client::PeftTrainerOptions peft,
               client::ZerothOrderTrainerOptions zo, peft::StateLayout layout, protocols::ModelDims dims)
      : config_(std::move(config)),
        model_(std::move(model)),
        peft_(std::move(peft)),
        zo_(std::move(zo)),
        layout_(std::move(layout)),
        dims_(dims) {}

  absl::StatusOr<std::unique_ptr<client::Trainer>> Create(Method method, uint64_t client) override {
    const uint64_t seed = model::DeriveSeed(model::DeriveSeed(config_.run.seed, kTrainerPurpose), client);
    switch (method) {
      case Method::kAuto:
      case Method::kLora:
        return std::unique_ptr<client::Trainer>(new client::LoraTrainer(model_, peft_, seed));
      case Method::kPartial:
        return std::unique_ptr<client::Trainer>(new client::PartialLayerTrainer(model_, peft_, seed));
      case Method::kZerothOrder:
        return std::unique_ptr<client::Trainer>(new client::ZerothOrderTrainer(model_, zo_, seed));
    }
    return absl::InvalidArgumentError("unknown training method");
  }

  std::unique_ptr<SlotScope> EnterSlot(int slot) override {
    if (!model_->device().is_cuda()) return nullptr;
    return std::make_unique<StreamSlot>(CudaIndex(), slot);
  }

  absl::StatusOr<protocols::TensorMap> InitialState() override {
    return peft::InitTrainableState(*model_, layout_, model::DeriveSeed(config_.run.seed, kInitPurpose));
  }

  protocols::ModelDims dims() const override { return dims_; }
  uint64_t shared_bytes() const override {
    return static_cast<uint64_t>(model_->NumParameters()) * static_cast<uint64_t>(dims_.bytes_per_param);
  }
  std::string description() const override {
    return absl::StrCat(config_.model.path, " (", model_->NumParameters(), " parameters, ", model_->config().n_layers,
                        " blocks), LibTorch trainers on ", model_->device().str());
  }

 private:
  struct StreamSlot final : SlotScope {
    StreamSlot(int device_index, int slot) : scope(device_index, slot) {}
    model::CudaStreamScope scope;
  };
  int CudaIndex() const { return model_->device().has_index() ? model_->device().index() : 0; }

  const protocols::RunConfig config_;
  const std::shared_ptr<const model::Model> model_;
  const client::PeftTrainerOptions peft_;
  const client::ZerothOrderTrainerOptions zo_;
  const peft::StateLayout layout_;
  const protocols::ModelDims dims_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TrainerFactory>> MakeModelTrainerFactory(const protocols::RunConfig& config,
                                                                        int num_labels) {
  FEDFM_ASSIGN_OR_RETURN(protocols::ModelDims dims, ReadModelDims(config));
  FEDFM_ASSIGN_OR_RETURN(peft::LoraSpec spec, peft::LoraSpecFromOptions(config.lora));
  FEDFM_ASSIGN_OR_RETURN(model::ModelOptions options, model::ModelOptionsFromConfig(config.model));
  FEDFM_ASSIGN_OR_RETURN(std::shared_ptr<const model::Model> model, model::LoadModel(config.model.path, options));
  if (config.data.seq_len > model->config().max_seq_len) {
    return absl::InvalidArgumentError(absl::StrCat("data.seq_len ", config.data.seq_len, " exceeds the model's ",
                                                   model->config().max_seq_len, " positions"));
  }
  // The workers' streams do not wait for the default stream the weights
  // were loaded on.
  if (model->device().is_cuda()) model::SynchronizeCudaDevice(model->device().has_index() ? model->device().index() : 0);
  const int n_layers = static_cast<int>(model->config().n_layers);
  peft::StateLayout layout;
  layout.lora = spec;
  if (config.partial.full_weights) {
    // Every block partial training may reach over the run.
    const int k_max = config.partial.progressive_every > 0
                          ? (config.partial.progressive_max > 0 ? config.partial.progressive_max : n_layers)
                          : config.partial.top_blocks;
    layout.full_weight_blocks = std::clamp(k_max, 1, n_layers);
  }
  layout.num_labels = num_labels;
  client::PeftTrainerOptions peft;
  peft.train = config.train;
  peft.lora = spec;
  peft.partial = config.partial;
  peft.eval_batch_size = 32;
  client::ZerothOrderTrainerOptions zo;
  zo.zo = config.zeroth_order;
  zo.train = config.train;
  zo.lora = spec;
  zo.eval_batch_size = 32;
  return std::unique_ptr<TrainerFactory>(
      new ModelFactory(config, std::move(model), std::move(peft), std::move(zo), layout, dims));
}

}  // namespace fedfm::simulation
