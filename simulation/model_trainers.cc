// The TrainerFactory of the real LibTorch trainers (LoRA, partial layers,
// zeroth order): the one LibTorch file of the simulation.
#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <utility>
#include <vector>

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

using Replicas = std::vector<std::shared_ptr<const model::Model>>;

// The model replica the calling thread's worker slot trains on (set while a
// ModelFactory slot binding lives; 0 otherwise).
thread_local size_t current_replica = 0;

// One client's trainer when the model has a replica per CUDA device: each
// call runs on the replica of the calling thread's slot, through a trainer
// of that replica (made on first use; a trainer's results depend on its
// seed and the task only, not on which replica ran it).
class ReplicaTrainer final : public client::Trainer {
 public:
  using Make = std::function<std::unique_ptr<client::Trainer>(const std::shared_ptr<const model::Model>&)>;
  ReplicaTrainer(const Replicas& replicas, Make make) : replicas_(replicas), make_(std::move(make)) {}

  absl::StatusOr<protocols::Update> Train(const protocols::Task& task, client::TrainableState& state,
                                          client::Dataset& data) override {
    return Current().Train(task, state, data);
  }
  absl::StatusOr<protocols::EvalReport> Evaluate(const protocols::Task& task, const client::TrainableState& state,
                                                 client::Dataset& data) override {
    return Current().Evaluate(task, state, data);
  }

 private:
  client::Trainer& Current() {
    std::unique_ptr<client::Trainer>& t = inner_[current_replica];
    if (t == nullptr) t = make_(replicas_[current_replica]);
    return *t;
  }

  const Replicas& replicas_;
  const Make make_;
  std::map<size_t, std::unique_ptr<client::Trainer>> inner_;
};

class ModelFactory final : public TrainerFactory {
 public:
  ModelFactory(protocols::RunConfig config, Replicas replicas, client::PeftTrainerOptions peft,
               client::ZerothOrderTrainerOptions zo, peft::StateLayout layout, protocols::ModelDims dims)
      : config_(std::move(config)),
        replicas_(std::move(replicas)),
        peft_(std::move(peft)),
        zo_(std::move(zo)),
        layout_(std::move(layout)),
        dims_(dims) {}

  absl::StatusOr<std::unique_ptr<client::Trainer>> Create(Method method, uint64_t client) override {
    const uint64_t seed = model::DeriveSeed(model::DeriveSeed(config_.run.seed, kTrainerPurpose), client);
    ReplicaTrainer::Make make = [this, method, seed](const std::shared_ptr<const model::Model>& model) {
      return MakeTrainer(method, model, seed);
    };
    if (replicas_.size() == 1) return make(replicas_[0]);
    return std::unique_ptr<client::Trainer>(new ReplicaTrainer(replicas_, std::move(make)));
  }

  std::unique_ptr<SlotScope> EnterSlot(int slot) override {
    if (!replicas_[0]->device().is_cuda()) return nullptr;
    const size_t replica = static_cast<size_t>(slot) % replicas_.size();
    return std::make_unique<StreamSlot>(replica, replicas_[replica]->device().index(), slot);
  }

  absl::StatusOr<protocols::TensorMap> InitialState() override {
    return peft::InitTrainableState(*replicas_[0], layout_, model::DeriveSeed(config_.run.seed, kInitPurpose));
  }

  protocols::ModelDims dims() const override { return dims_; }
  uint64_t shared_bytes() const override {
    return replicas_.size() * static_cast<uint64_t>(replicas_[0]->NumParameters()) *
           static_cast<uint64_t>(dims_.bytes_per_param);
  }
  std::string description() const override {
    const model::Model& m = *replicas_[0];
    std::string where = m.device().str();
    if (replicas_.size() > 1) {
      where = absl::StrCat(replicas_.size(), " CUDA devices (a replica each: ", m.device().str(), "..",
                           replicas_.back()->device().str(), ")");
    }
    return absl::StrCat(config_.model.path, " (", m.NumParameters(), " parameters, ", m.config().n_layers,
                        " blocks), LibTorch trainers on ", where);
  }

 private:
  // A slot's binding: its replica and its CUDA stream on that replica's device.
  struct StreamSlot final : SlotScope {
    StreamSlot(size_t replica, int device_index, int slot)
        : previous(std::exchange(current_replica, replica)), scope(device_index, slot) {}
    ~StreamSlot() override { current_replica = previous; }
    size_t previous;
    model::CudaStreamScope scope;
  };

  std::unique_ptr<client::Trainer> MakeTrainer(Method method, const std::shared_ptr<const model::Model>& model,
                                               uint64_t seed) const {
    switch (method) {
      case Method::kPartial:
        return std::make_unique<client::PartialLayerTrainer>(model, peft_, seed);
      case Method::kZerothOrder:
        return std::make_unique<client::ZerothOrderTrainer>(model, zo_, seed);
      case Method::kAuto:
      case Method::kLora:
        return std::make_unique<client::LoraTrainer>(model, peft_, seed);
    }
    return nullptr;  // not reached: every Method is handled above
  }

  const protocols::RunConfig config_;
  const Replicas replicas_;
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
  // model.device = "cuda": a replica on every visible CUDA device, so that
  // the worker slots spread over them (CUDA_VISIBLE_DEVICES narrows it).
  std::vector<torch::Device> devices = {options.device};
  if (options.device.is_cuda()) {
    devices.clear();
    for (int i = 0; i < std::max(1, model::CudaDeviceCount()); ++i) {
      devices.emplace_back(torch::kCUDA, static_cast<c10::DeviceIndex>(i));
    }
  }
  Replicas replicas;
  for (const torch::Device& device : devices) {
    options.device = device;
    FEDFM_ASSIGN_OR_RETURN(std::shared_ptr<const model::Model> replica, model::LoadModel(config.model.path, options));
    // The workers' streams do not wait for the default stream the weights
    // were loaded on.
    if (device.is_cuda()) model::SynchronizeCudaDevice(device.index());
    replicas.push_back(std::move(replica));
  }
  const model::Model* model = replicas[0].get();
  if (config.data.seq_len > model->config().max_seq_len) {
    return absl::InvalidArgumentError(absl::StrCat("data.seq_len ", config.data.seq_len, " exceeds the model's ",
                                                   model->config().max_seq_len, " positions"));
  }
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
  layout.optimizer_state = config.train.optimizer_state == "global";
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
      new ModelFactory(config, std::move(replicas), std::move(peft), std::move(zo), layout, dims));
}

}  // namespace fedfm::simulation
