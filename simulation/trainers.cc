#include "simulation/trainers.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "model/checkpoint.h"
#include "peft/state.h"
#include "protocols/status_macros.h"
#include "zeroth_order/noise.h"

namespace fedfm::simulation {
namespace {

using protocols::Method;

protocols::ModelDims DimsOf(const model::ModelConfig& c, protocols::ModelDType dtype) {
  protocols::ModelDims d;
  d.num_params = c.NumParameters();
  d.num_layers = c.n_layers;
  d.dim = c.dim;
  d.hidden_dim = c.hidden_dim;
  d.num_heads = c.n_heads;
  d.num_kv_heads = c.n_kv_heads;
  d.vocab_size = c.vocab_size;
  d.bytes_per_param = dtype == protocols::ModelDType::kBF16 ? 2 : 4;
  return d;
}

model::ModelConfig ConfigOf(const protocols::ModelDims& d) {
  model::ModelConfig c;
  c.dim = d.dim;
  c.hidden_dim = d.hidden_dim;
  c.n_layers = d.num_layers;
  c.n_heads = d.num_heads;
  c.n_kv_heads = d.num_kv_heads > 0 ? d.num_kv_heads : d.num_heads;
  c.vocab_size = d.vocab_size;
  c.max_seq_len = 2048;
  return c;
}

class FakeFactory final : public TrainerFactory {
 public:
  FakeFactory(protocols::RunConfig config, protocols::ModelDims dims, FakeTrainerSettings settings,
              zeroth_order::NoiseKind noise)
      : config_(std::move(config)), dims_(dims), settings_(settings), noise_(noise) {}

  absl::StatusOr<std::unique_ptr<client::Trainer>> Create(Method method, uint64_t) override {
    client::FakeTrainerOptions o;
    o.target_seed = settings_.target_seed;
    o.quality = method == Method::kZerothOrder ? settings_.zo_quality
                : method == Method::kPartial   ? settings_.partial_quality
                                               : settings_.lora_quality;
    const zeroth_order::NoiseKind kind = noise_;
    o.direction = [kind](uint64_t seed, const protocols::TensorMap& like) -> absl::StatusOr<protocols::TensorMap> {
      protocols::TensorMap z;
      for (const auto& [name, t] : like) z.Set(name, protocols::Tensor::Zeros(protocols::DType::kF32, t.shape()));
      FEDFM_RETURN_IF_ERROR(zeroth_order::AddScaledNoise(z, seed, kind, 1.0f));
      return z;
    };
    return std::unique_ptr<client::Trainer>(new client::FakeTrainer(std::move(o)));
  }

  absl::StatusOr<protocols::TensorMap> InitialState() override {
    FEDFM_ASSIGN_OR_RETURN(peft::LoraSpec spec, peft::LoraSpecFromOptions(config_.lora));
    peft::StateLayout layout;
    layout.lora = spec;
    return peft::InitAdapterState(ConfigOf(dims_), layout, config_.run.seed);
  }

  protocols::ModelDims dims() const override { return dims_; }
  uint64_t shared_bytes() const override { return 0; }
  std::string description() const override {
    return absl::StrCat("FakeTrainer stand-ins (no model trained) over the state layout of a ", dims_.num_params,
                        "-parameter model");
  }

 private:
  const protocols::RunConfig config_;
  const protocols::ModelDims dims_;
  const FakeTrainerSettings settings_;
  const zeroth_order::NoiseKind noise_;
};

}  // namespace

absl::StatusOr<protocols::ModelDims> ReadModelDims(const protocols::RunConfig& config) {
  FEDFM_ASSIGN_OR_RETURN(model::CheckpointInfo info, model::ReadCheckpointInfo(config.model.path));
  return DimsOf(info.config, config.model.dtype);
}

absl::StatusOr<std::unique_ptr<TrainerFactory>> MakeFakeTrainerFactory(const protocols::RunConfig& config,
                                                                       const protocols::ModelDims& dims,
                                                                       const FakeTrainerSettings& settings) {
  FEDFM_ASSIGN_OR_RETURN(zeroth_order::NoiseKind noise, zeroth_order::ParseNoiseKind(config.zeroth_order.noise));
  return std::unique_ptr<TrainerFactory>(new FakeFactory(config, dims, settings, noise));
}


}  // namespace fedfm::simulation
