#include "client/zeroth_order_trainer.h"

#include <torch/csrc/autograd/forward_grad.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/internal/batches.h"
#include "client/internal/torch_compat.h"
#include "model/dataset_rng.h"
#include "model/transformer.h"
#include "peft/trainable.h"
#include "protocols/config/config.h"
#include "protocols/optimizer_state.h"
#include "protocols/status_macros.h"
#include "zeroth_order/noise_torch.h"
#include "zeroth_order/philox.h"
#include "zeroth_order/seed_pool.h"
#include "zeroth_order/zo_step.h"

namespace fedfm::client {
namespace {

using Clock = std::chrono::steady_clock;
using internal::BatchStream;
using internal::DeviceBatch;
using internal::FromTorchError;
using internal::kBatchOrderPurpose;
using internal::Loss;
using internal::ToDevice;
using protocols::Coverage;
using protocols::TensorCoverage;
using protocols::TensorMap;

// Purposes of model::DeriveSeed under the round seed.
constexpr uint64_t kStepPurpose = 3;  // internal::kBatchOrderPurpose is 2

// A run of consecutive elements of one global tensor inside the flat buffer.
struct Segment {
  uint32_t tensor_index = 0;     // position of the tensor in the global state
  int64_t flat_offset = 0;       // first element in the flat buffer
  int64_t length = 0;
  uint64_t element_offset = 0;   // flat row-major index in the full tensor
};

// The noise layout of StateForward's flat buffer: its pieces follow the
// coverage's order, each the covered slice of its tensor, row-major. A
// rank slice along dim d of a tensor viewed as [outer, D, inner] is `outer`
// runs of rank * inner elements (one run for LoRA A, one per row for LoRA B).
absl::StatusOr<std::vector<Segment>> NoiseLayout(const TensorMap& state, const Coverage& coverage,
                                                 int64_t flat_size) {
  std::unordered_map<std::string, uint32_t> index;
  uint32_t i = 0;
  for (const auto& [name, t] : state) index.emplace(name, i++);
  std::vector<Segment> segments;
  int64_t offset = 0;
  for (const TensorCoverage& c : coverage.tensors) {
    auto it = index.find(c.name);
    if (it == index.end()) return absl::InternalError(absl::StrCat("trained tensor \"", c.name, "\" not in the state"));
    const std::vector<int64_t>& shape = state.at(c.name).shape();
    if (c.rank_dim < 0) {
      const int64_t n = protocols::NumElements(shape);
      segments.push_back({it->second, offset, n, 0});
      offset += n;
      continue;
    }
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < c.rank_dim; ++d) outer *= shape[d];
    for (size_t d = static_cast<size_t>(c.rank_dim) + 1; d < shape.size(); ++d) inner *= shape[d];
    const int64_t dim = shape[c.rank_dim];
    const int64_t run = c.rank * inner;
    for (int64_t o = 0; o < outer; ++o) {
      segments.push_back({it->second, offset, run, static_cast<uint64_t>(o * dim * inner)});
      offset += run;
    }
  }
  if (offset != flat_size) {
    return absl::InternalError(absl::StrCat("zeroth-order noise layout covers ", offset,
                                            " elements but the trainable buffer has ", flat_size));
  }
  return segments;
}

// The flat trainable buffer as zeroth-order parameters: segment s of it
// takes noise stream (seed, s.tensor_index, kind) from element
// s.element_offset on, exactly as the coordinator's replay of the full tensor.
class FlatParameters final : public zeroth_order::PerturbableParameters {
 public:
  // `flat`: a contiguous float32 tensor sharing the trainable buffer's storage
  // (detached); `segments` from NoiseLayout.
  FlatParameters(torch::Tensor flat, const std::vector<Segment>& segments) : flat_(std::move(flat)) {
    torch::NoGradGuard no_grad;
    for (const Segment& s : segments) {
      views_.push_back({flat_.narrow(0, s.flat_offset, s.length), s.tensor_index, s.element_offset});
    }
  }

  // One batched call: on CUDA the segments share kernel launches.
  absl::Status AddScaledNoise(uint64_t seed, zeroth_order::NoiseKind kind, float alpha) override {
    return zeroth_order::AddScaledNoiseSpans(views_, seed, kind, alpha);
  }

  absl::Status Scale(float factor) override {
    torch::NoGradGuard no_grad;
    flat_.mul_(static_cast<double>(factor));
    return absl::OkStatus();
  }

  const torch::Tensor& flat() const { return flat_; }

 private:
  torch::Tensor flat_;
  std::vector<zeroth_order::NoiseSpan> views_;
};

// Releases a forward-AD level (and every tangent set at it), also on throw.
class DualLevel {
 public:
  DualLevel() : index_(torch::autograd::ForwardADLevel::get_next_idx()) {}
  ~DualLevel() { torch::autograd::ForwardADLevel::release_idx(index_); }
  DualLevel(const DualLevel&) = delete;
  DualLevel& operator=(const DualLevel&) = delete;
  uint64_t index() const { return index_; }

 private:
  uint64_t index_;
};

// The trained coverage of `options.trainable` (see the header).
absl::StatusOr<Coverage> TrainedSet(const ZerothOrderTrainerOptions& options, const protocols::Task& task,
                                    const TensorMap& state, int n_layers) {
  if (options.trainable == ZoTrainable::kTaskCoverage) {
    return task.coverage.tensors.empty() ? Coverage::Full(state) : task.coverage;
  }
  peft::TrainRequest request;
  request.method = protocols::Method::kPartial;
  request.lora_rank = task.lora_rank;
  request.top_blocks = options.trainable == ZoTrainable::kAllBlockWeights ? n_layers : options.top_blocks;
  request.full_weights = options.trainable != ZoTrainable::kTopBlockAdapters;
  if (request.top_blocks < 1 || request.top_blocks > n_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("zeroth-order top_blocks must be 1..", n_layers, ", got ", request.top_blocks));
  }
  FEDFM_ASSIGN_OR_RETURN(Coverage coverage, peft::TrainedCoverage(state, request, n_layers));
  if (request.full_weights) {
    // Every block that should train must have its weights in the state.
    for (int layer = n_layers - request.top_blocks; layer < n_layers; ++layer) {
      bool any = false;
      for (const TensorCoverage& c : coverage.tensors) any = any || peft::BlockOfTensor(c.name) == layer;
      if (!any) {
        return absl::InvalidArgumentError(absl::StrCat(
            "zeroth-order training of full block weights: the state holds no weights of block ", layer,
            " (build it with peft.partial.full_weights over at least ", request.top_blocks, " top blocks)"));
      }
    }
  }
  if (!task.coverage.tensors.empty()) {
    std::string why;
    if (!CoverageWithin(coverage, task.coverage, &why)) {
      return absl::InvalidArgumentError(absl::StrCat("the task's coverage does not allow this training: ", why));
    }
  }
  return coverage;
}

// The coordinator replays a seed-scalar update over every tensor of the
// global state, whole; a client must have perturbed exactly that.
absl::Status CheckWholeState(const Coverage& coverage, const TensorMap& state) {
  for (const auto& [name, t] : state) {
    const TensorCoverage* c = coverage.Find(name);
    if (c == nullptr || c->rank_dim >= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a seed-pool (seed-scalar) task trains every tensor of the global state whole, since the coordinator "
          "replays the seeds over all of it; tensor \"", name, "\" is ",
          c == nullptr ? "not trained" : absl::StrCat("trained only at rank ", c->rank)));
    }
  }
  return absl::OkStatus();
}

struct Hyper {
  int steps = 0;
  int batch = 0;
  int accumulation = 1;
  int seq_len = 0;
};

absl::StatusOr<Hyper> Resolve(const protocols::Task& task, const protocols::TrainOptions& train) {
  Hyper h;
  h.steps = task.local_steps > 0 ? task.local_steps : train.local_steps;
  h.batch = task.batch_size > 0 ? task.batch_size : train.batch_size;
  h.accumulation = task.grad_accumulation > 0 ? task.grad_accumulation : std::max(1, train.grad_accumulation);
  h.seq_len = task.seq_len;
  if (h.steps < 1 || h.batch < 1 || h.seq_len < 0) {
    return absl::InvalidArgumentError(absl::StrCat("bad zeroth-order hyperparameters: steps ", h.steps, ", batch ",
                                                   h.batch, ", seq_len ", h.seq_len));
  }
  return h;
}

// One forward-gradient step over the flat buffer (docs/zeroth_order_noise.md
// section 10, with this trainer's noise layout): per perturbation, the
// tangent z_p is set on the buffer and one forward pass gives g_p = dL/dtheta . z_p.
absl::StatusOr<zeroth_order::ZoStepResult> ForwardGradientStep(FlatParameters& params, const torch::Tensor& leaf,
                                                               FlatParameters& tangent,
                                                               const std::function<torch::Tensor()>& loss,
                                                               uint64_t step_seed,
                                                               const zeroth_order::ZoSettings& settings,
                                                               const zeroth_order::SeedPool* pool,
                                                               bool* non_finite) {
  zeroth_order::ZoStepResult result;
  result.perturbations = zeroth_order::PerturbationSeeds(step_seed, settings.perturbations, pool);
  for (zeroth_order::Perturbation& p : result.perturbations) {
    {
      torch::NoGradGuard no_grad;
      tangent.flat().zero_();
    }
    FEDFM_RETURN_IF_ERROR(tangent.AddScaledNoise(p.seed, settings.noise, 1.0f));  // 0 + 1 * z = z exactly
    const DualLevel level;
    leaf._set_fw_grad(tangent.flat(), level.index(), /*is_inplace_op=*/false);
    const torch::Tensor value = loss();
    const double l = value.item<double>();
    const torch::Tensor& t = value._fw_grad(level.index());
    p.projected_gradient = t.defined() ? t.item<double>() : 0.0;
    if (!std::isfinite(l) || !std::isfinite(p.projected_gradient)) {
      *non_finite = true;
      return absl::FailedPreconditionError(absl::StrCat("zeroth-order forward gradient: loss ", l,
                                                        ", directional derivative ", p.projected_gradient));
    }
    result.loss_plus += l;
  }
  result.loss_plus /= settings.perturbations;
  result.loss_minus = result.loss_plus;
  FEDFM_RETURN_IF_ERROR(zeroth_order::ApplyZoUpdate(params, result.perturbations, settings));
  return result;
}

absl::StatusOr<protocols::Update> TrainImpl(const std::shared_ptr<const model::Model>& model,
                                            const ZerothOrderTrainerOptions& options, uint64_t seed,
                                            const protocols::Task& task, TrainableState& global,
                                            const Dataset& data) {
  FEDFM_ASSIGN_OR_RETURN(Hyper h, Resolve(task, options.train));
  // Zeroth order perturbs, and the coordinator replays, the model's tensors
  // only; optimizer state carried for backprop clients stays as it is.
  const TensorMap state = protocols::WithoutOptimizerState(global);
  if (data.train.empty()) return absl::InvalidArgumentError("no training examples");
  const int n_layers = static_cast<int>(model->config().n_layers);
  FEDFM_ASSIGN_OR_RETURN(Coverage coverage, TrainedSet(options, task, state, n_layers));
  std::optional<zeroth_order::SeedPool> pool;
  if (!task.seed_pool.empty()) {
    FEDFM_RETURN_IF_ERROR(CheckWholeState(coverage, state));
    pool.emplace(task.seed_pool);
  }
  protocols::ZerothOrderOptions zo = options.zo;
  zo.epsilon = task.zo_epsilon;
  zo.learning_rate = task.zo_learning_rate;
  zo.perturbations = task.zo_perturbations;
  FEDFM_ASSIGN_OR_RETURN(zeroth_order::ZoSettings settings, zeroth_order::ParseZoOptions(zo, pool.has_value()));
  const torch::Device device = model->device();
  if (device.is_cuda() && !zeroth_order::CudaNoiseAvailable()) {
    return absl::FailedPreconditionError(
        "zeroth-order training on CUDA needs fedfm built with FEDFM_CUDA (the noise kernels)");
  }

  peft::StateForwardOptions fo;
  fo.alpha = options.lora.alpha;
  fo.rslora = options.lora.rslora;
  fo.dropout = 0.0;  // L+ and L- must see the same function
  fo.pooling = options.mean_pooling ? model::Pooling::kMean : model::Pooling::kLastToken;
  if (options.train.bf16_autocast && device.is_cuda()) fo.compute_dtype = torch::kFloat;
  FEDFM_ASSIGN_OR_RETURN(std::unique_ptr<peft::StateForward> forward,
                         peft::StateForward::Create(model, state, coverage, fo));
  const bool classification = data.num_labels > 0;
  if (classification && forward->num_labels() != data.num_labels) {
    return absl::InvalidArgumentError(absl::StrCat("classification data has ", data.num_labels,
                                                   " labels but the state's head (", peft::kScoreHeadName, ") has ",
                                                   forward->num_labels()));
  }
  if (forward->num_parameters() == 0) return absl::InvalidArgumentError("zeroth-order task trains no parameters");
  FEDFM_ASSIGN_OR_RETURN(std::vector<Segment> layout,
                         NoiseLayout(state, forward->coverage(), forward->num_parameters()));
  torch::Tensor leaf = forward->parameters();
  FlatParameters params(leaf.detach(), layout);
  std::optional<FlatParameters> tangent;
  if (settings.forward_estimator) {
    torch::NoGradGuard no_grad;
    tangent.emplace(torch::zeros_like(leaf.detach()), layout);
  }

  const uint64_t round_seed = model::DeriveSeed(seed, task.round_seed);
  BatchStream batches(data.train.size(), static_cast<size_t>(h.batch),
                      model::DeriveSeed(round_seed, kBatchOrderPurpose));
  zeroth_order::SeedScalarAccumulator acc(pool.has_value() ? pool->size() : 1);

  internal::PeakMemoryMeter meter(device);
  const auto start = Clock::now();
  double loss_sum = 0, first_loss = 0, last_loss = 0, grad_abs_sum = 0;
  int64_t tokens = 0;
  int done = 0, skipped = 0;
  std::vector<DeviceBatch> micro(static_cast<size_t>(h.accumulation));
  for (int step = 1; step <= h.steps; ++step) {
    for (int m = 0; m < h.accumulation; ++m) {
      const model::Batch host = model::MakeBatch(data.train, batches.Next(), /*pad_id=*/0, h.seq_len);
      ToDevice(host, device, classification, &micro[m]);
      tokens += micro[m].tokens;
    }
    auto loss_tensor = [&]() -> torch::Tensor {
      internal::Bf16AutocastGuard autocast(device, options.train.bf16_autocast);
      forward->Materialize();
      torch::Tensor sum;
      for (const DeviceBatch& batch : micro) {
        torch::Tensor l = Loss(*forward, batch, classification, /*count_correct=*/false).loss;
        sum = sum.defined() ? sum + l : l;
      }
      return sum / static_cast<double>(micro.size());
    };
    bool non_finite = false;
    const uint64_t step_seed = ZerothOrderStepSeed(seed, task.round_seed, step - 1);
    const zeroth_order::SeedPool* pool_ptr = pool.has_value() ? &*pool : nullptr;
    absl::StatusOr<zeroth_order::ZoStepResult> result;
    torch::NoGradGuard no_grad;
    if (settings.forward_estimator) {
      result = ForwardGradientStep(params, leaf, *tangent, loss_tensor, step_seed, settings, pool_ptr, &non_finite);
    } else {
      const zeroth_order::LossFn loss = [&]() -> double {
        const double l = loss_tensor().item<double>();
        if (!std::isfinite(l)) non_finite = true;
        return l;
      };
      result = zeroth_order::SpsaStep(params, loss, step_seed, zo, pool_ptr);
    }
    if (!result.ok()) {
      // A non-finite loss leaves theta restored: skip the step (e.g. a batch
      // with no targets); anything else is an error.
      if (non_finite && absl::IsFailedPrecondition(result.status())) {
        ++skipped;
        continue;
      }
      return result.status();
    }
    if (pool.has_value()) zeroth_order::AccumulateSeedScalars(*result, acc);
    const double step_loss = 0.5 * (result->loss_plus + result->loss_minus);
    double grad_abs = 0;
    for (const zeroth_order::Perturbation& p : result->perturbations) grad_abs += std::abs(p.projected_gradient);
    grad_abs /= static_cast<double>(result->perturbations.size());
    ++done;
    if (done == 1) first_loss = step_loss;
    last_loss = step_loss;
    loss_sum += step_loss;
    grad_abs_sum += grad_abs;
    if (options.on_step) {
      TrainProgress p;
      p.step = step;
      p.steps = h.steps;
      p.loss = step_loss;
      p.grad_norm = grad_abs;
      p.tokens = tokens;
      p.elapsed_s = std::chrono::duration<double>(Clock::now() - start).count();
      options.on_step(p);
    }
  }
  if (done == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("zeroth-order training: every one of ", h.steps, " steps had a non-finite loss"));
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const int64_t peak = meter.PeakBytes();

  const uint64_t num_examples = static_cast<uint64_t>(h.steps) * h.accumulation * h.batch;
  protocols::Update update;
  if (pool.has_value()) {
    update = acc.ToUpdate("", num_examples);
  } else {
    update.kind = protocols::UpdateKind::kDense;
    FEDFM_ASSIGN_OR_RETURN(update.delta, forward->Delta());
    update.coverage = forward->coverage();
    update.num_examples = num_examples;
  }
  if (options.write_back_state) {
    FEDFM_ASSIGN_OR_RETURN(TensorMap current, forward->CurrentState());
    for (auto& [name, t] : current) global.Set(name, std::move(t));
  }
  update.peak_memory_bytes = peak > 0 ? static_cast<uint64_t>(peak) : 0;
  update.metrics["train_loss"] = loss_sum / done;
  update.metrics["train_loss_first"] = first_loss;
  update.metrics["train_loss_last"] = last_loss;
  update.metrics["steps"] = h.steps;
  update.metrics["skipped_steps"] = skipped;
  update.metrics["forward_passes"] =
      static_cast<double>(done) * settings.perturbations * (settings.forward_estimator ? 1 : 2) * h.accumulation;
  update.metrics["perturbations"] = settings.perturbations;
  update.metrics["tokens"] = static_cast<double>(tokens);
  update.metrics["tokens_per_s"] = seconds > 0 ? tokens / seconds : 0.0;
  update.metrics["train_seconds"] = seconds;
  update.metrics["trainable_parameters"] = static_cast<double>(forward->num_parameters());
  update.metrics["peak_memory_bytes"] = static_cast<double>(peak);
  update.metrics["projected_grad_abs_mean"] = grad_abs_sum / done;
  return update;
}

}  // namespace

uint64_t ZerothOrderStepSeed(uint64_t trainer_seed, uint64_t round_seed, int step) {
  const uint64_t base = model::DeriveSeed(model::DeriveSeed(trainer_seed, round_seed), kStepPurpose);
  return zeroth_order::DeriveSeed(base, static_cast<uint64_t>(step), 0, zeroth_order::kPurposeStep);
}

ZerothOrderTrainer::ZerothOrderTrainer(std::shared_ptr<const model::Model> model, ZerothOrderTrainerOptions options,
                                       uint64_t seed)
    : model_(std::move(model)), options_(std::move(options)), seed_(seed) {}

absl::StatusOr<protocols::Update> ZerothOrderTrainer::Train(const protocols::Task& task, TrainableState& state,
                                                            Dataset& data) {
  if (task.method != protocols::Method::kZerothOrder) {
    return absl::InvalidArgumentError(
        absl::StrCat("ZerothOrderTrainer cannot run a \"", protocols::MethodName(task.method), "\" task"));
  }
  if (model_ == nullptr) return absl::FailedPreconditionError("trainer has no model");
  try {
    return TrainImpl(model_, options_, seed_, task, state, data);
  } catch (const c10::Error& e) {
    return FromTorchError("zeroth-order training failed", e);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("zeroth-order training failed: out of memory");
  }
}

absl::StatusOr<protocols::EvalReport> ZerothOrderTrainer::Evaluate(const protocols::Task& task,
                                                                   const TrainableState& state, Dataset& data) {
  PeftTrainerOptions peft;
  peft.train = options_.train;
  peft.lora = options_.lora;
  peft.mean_pooling = options_.mean_pooling;
  peft.eval_batch_size = options_.eval_batch_size;
  return EvaluatePeft(model_, peft, task, state, data);
}

}  // namespace fedfm::client
