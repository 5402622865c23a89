#include "client/train_loop.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "client/internal/batches.h"
#include "client/internal/torch_compat.h"
#include "model/dataset_rng.h"
#include "model/transformer.h"
#include "peft/trainable.h"
#include "protocols/optimizer_state.h"
#include "protocols/status_macros.h"

namespace fedfm::client {
namespace {

using Clock = std::chrono::steady_clock;
using internal::BatchLoss;
using internal::BatchStream;
using internal::DeviceBatch;
using internal::FromTorchError;
using internal::kBatchOrderPurpose;
using internal::Loss;
using internal::ToDevice;

// Seed purposes.
constexpr uint64_t kDropoutPurpose = 1;  // internal::kBatchOrderPurpose is 2

// The round's hyperparameters: the task's, else the options' defaults.
struct Hyper {
  int steps = 0;
  int batch = 0;
  int accumulation = 1;
  int seq_len = 0;
  double lr = 0;
  double weight_decay = 0;
  double grad_clip = 0;
  double mu = 0;
  bool adamw = true;
};

absl::StatusOr<Hyper> Resolve(const protocols::Task& task, const protocols::TrainOptions& train) {
  Hyper h;
  h.steps = task.local_steps > 0 ? task.local_steps : train.local_steps;
  h.batch = task.batch_size > 0 ? task.batch_size : train.batch_size;
  h.accumulation = task.grad_accumulation > 0 ? task.grad_accumulation : std::max(1, train.grad_accumulation);
  h.seq_len = task.seq_len;
  h.lr = task.learning_rate > 0 ? task.learning_rate : train.learning_rate;
  h.weight_decay = task.weight_decay > 0 ? task.weight_decay : train.weight_decay;
  h.grad_clip = task.grad_clip > 0 ? task.grad_clip : train.grad_clip;
  h.mu = task.fedprox_mu > 0 ? task.fedprox_mu : train.fedprox_mu;
  if (train.optimizer == "sgd") {
    h.adamw = false;
  } else if (train.optimizer != "adamw") {
    return absl::InvalidArgumentError(absl::StrCat("train.optimizer must be \"adamw\" or \"sgd\", got \"",
                                                   train.optimizer, "\""));
  }
  if (h.steps < 1 || h.batch < 1 || h.seq_len < 0 || !(h.lr > 0) || h.weight_decay < 0 || h.grad_clip < 0 ||
      h.mu < 0) {
    return absl::InvalidArgumentError(absl::StrCat("bad training hyperparameters: steps ", h.steps, ", batch ",
                                                   h.batch, ", seq_len ", h.seq_len, ", learning rate ", h.lr,
                                                   ", weight decay ", h.weight_decay, ", grad clip ", h.grad_clip,
                                                   ", fedprox mu ", h.mu));
  }
  return h;
}

absl::StatusOr<std::unique_ptr<peft::StateForward>> MakeForward(const std::shared_ptr<const model::Model>& model,
                                                                const PeftTrainerOptions& options,
                                                                const TrainableState& state,
                                                                const protocols::Coverage& coverage,
                                                                uint64_t dropout_seed, const Dataset& data) {
  peft::StateForwardOptions fo;
  fo.alpha = options.lora.alpha;
  fo.rslora = options.lora.rslora;
  fo.dropout = options.lora.dropout;
  fo.dropout_seed = dropout_seed;
  fo.pooling = options.mean_pooling ? model::Pooling::kMean : model::Pooling::kLastToken;
  // Under CUDA autocast the adapters stay float32 and autocast casts them.
  if (options.train.bf16_autocast && model->device().is_cuda()) fo.compute_dtype = torch::kFloat;
  FEDFM_ASSIGN_OR_RETURN(std::unique_ptr<peft::StateForward> forward,
                         peft::StateForward::Create(model, state, coverage, fo));
  if (data.num_labels > 0 && forward->num_labels() != data.num_labels) {
    return absl::InvalidArgumentError(absl::StrCat("classification data has ", data.num_labels,
                                                   " labels but the state's head (", peft::kScoreHeadName, ") has ",
                                                   forward->num_labels()));
  }
  return forward;
}

absl::StatusOr<protocols::Update> TrainPeftImpl(const std::shared_ptr<const model::Model>& model,
                                                const PeftTrainerOptions& options, uint64_t seed,
                                                const protocols::Task& task, const peft::TrainRequest& request,
                                                const TrainableState& state, const Dataset& data) {
  FEDFM_ASSIGN_OR_RETURN(Hyper h, Resolve(task, options.train));
  if (data.train.empty()) return absl::InvalidArgumentError("no training examples");
  const int n_layers = static_cast<int>(model->config().n_layers);
  FEDFM_ASSIGN_OR_RETURN(protocols::Coverage coverage, peft::TrainedCoverage(state, request, n_layers));
  // AdamW continues from moments the global state carries
  // (train.optimizer_state = "global"); the update then changes them too.
  const bool carried = h.adamw && protocols::HasOptimizerState(state);
  protocols::Coverage update_coverage = coverage;
  if (carried) {
    FEDFM_ASSIGN_OR_RETURN(update_coverage, protocols::WithOptimizerStateCoverage(state, coverage));
  }
  if (!task.coverage.tensors.empty()) {
    std::string why;
    if (!CoverageWithin(update_coverage, task.coverage, &why)) {
      return absl::InvalidArgumentError(absl::StrCat("the task's coverage does not allow this training: ", why));
    }
  }
  const uint64_t round_seed = model::DeriveSeed(seed, task.round_seed);
  FEDFM_ASSIGN_OR_RETURN(std::unique_ptr<peft::StateForward> forward,
                         MakeForward(model, options, state, coverage,
                                     model::DeriveSeed(round_seed, kDropoutPurpose), data));
  const bool classification = data.num_labels > 0;
  const torch::Device device = model->device();
  torch::Tensor& theta = forward->parameters();
  const torch::Tensor& theta0 = forward->initial_parameters();
  torch::Tensor m, v, m0, v0;  // AdamW moments, now and at the start
  double step0 = 0;             // steps behind m0 and v0
  if (carried) {
    FEDFM_ASSIGN_OR_RETURN(step0, protocols::OptimizerStep(state));
    FEDFM_ASSIGN_OR_RETURN(m0, forward->Gather(state, protocols::kExpAvgPrefix));
    FEDFM_ASSIGN_OR_RETURN(v0, forward->Gather(state, protocols::kExpAvgSqPrefix));
    if (!torch::isfinite(m0).all().item<bool>() || !torch::isfinite(v0).all().item<bool>()) {
      return absl::InvalidArgumentError("the state's optimizer moments hold a non-finite value");
    }
    v0.clamp_min_(0);  // a mean of non-negative values, rounded, may fall a hair below 0
    m = m0.clone();
    v = v0.clone();
  } else if (h.adamw) {
    m = torch::zeros_like(theta0);
    v = torch::zeros_like(theta0);
  }
  forward->set_training(true);
  BatchStream batches(data.train.size(), static_cast<size_t>(h.batch),
                      model::DeriveSeed(round_seed, kBatchOrderPurpose));
  internal::PeakMemoryMeter meter(device);
  const auto start = Clock::now();
  double loss_sum = 0, first_loss = 0, last_loss = 0, grad_norm = 0;
  int64_t tokens = 0;
  DeviceBatch batch;  // its tensors are reused from step to step
  for (int step = 1; step <= h.steps; ++step) {
    double step_loss = 0;
    for (int micro = 0; micro < h.accumulation; ++micro) {
      const model::Batch host = model::MakeBatch(data.train, batches.Next(), /*pad_id=*/0, h.seq_len);
      ToDevice(host, device, classification, &batch);
      tokens += batch.tokens;
      forward->Materialize();
      torch::Tensor loss;
      {
        internal::Bf16AutocastGuard autocast(device, options.train.bf16_autocast);
        loss = Loss(*forward, batch, classification, /*count_correct=*/false).loss;
      }
      (loss / h.accumulation).backward();
      step_loss += loss.item<double>() / h.accumulation;
    }
    {
      torch::NoGradGuard no_grad;
      torch::Tensor grad = theta.mutable_grad();
      if (!grad.defined()) grad = theta.mutable_grad() = torch::zeros_like(theta);
      if (h.mu > 0) grad.add_(theta - theta0, h.mu);
      grad_norm = grad.norm().item<double>();
      if (h.grad_clip > 0 && grad_norm > h.grad_clip) grad.mul_(h.grad_clip / (grad_norm + 1e-6));
      if (h.adamw) {
        constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;
        if (h.weight_decay > 0) theta.mul_(1.0 - h.lr * h.weight_decay);
        m.mul_(kBeta1).add_(grad, 1.0 - kBeta1);
        v.mul_(kBeta2).addcmul_(grad, grad, 1.0 - kBeta2);
        const double bias1 = 1.0 - std::pow(kBeta1, step0 + step);
        const double bias2 = 1.0 - std::pow(kBeta2, step0 + step);
        const torch::Tensor denom = (v.sqrt() / std::sqrt(bias2)).add_(kEps);
        theta.addcdiv_(m, denom, -h.lr / bias1);
      } else {
        if (h.weight_decay > 0) grad.add_(theta, h.weight_decay);
        theta.add_(grad, -h.lr);
      }
      grad.zero_();
    }
    if (step == 1) first_loss = step_loss;
    last_loss = step_loss;
    loss_sum += step_loss;
    if (options.on_step) {
      TrainProgress p;
      p.step = step;
      p.steps = h.steps;
      p.loss = step_loss;
      p.grad_norm = grad_norm;
      p.tokens = tokens;
      p.elapsed_s = std::chrono::duration<double>(Clock::now() - start).count();
      options.on_step(p);
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const int64_t peak = meter.PeakBytes();

  protocols::Update update;
  update.kind = protocols::UpdateKind::kDense;
  FEDFM_ASSIGN_OR_RETURN(update.delta, forward->Delta());
  update.coverage = forward->coverage();
  if (carried) {
    for (const auto& [prefix, now, before] :
         {std::tuple{protocols::kExpAvgPrefix, m, m0}, std::tuple{protocols::kExpAvgSqPrefix, v, v0}}) {
      FEDFM_ASSIGN_OR_RETURN(protocols::TensorMap moments, forward->Scatter(now - before, prefix));
      for (auto& [name, t] : moments) FEDFM_RETURN_IF_ERROR(update.delta.Insert(name, std::move(t)));
    }
    FEDFM_RETURN_IF_ERROR(update.delta.Insert(
        protocols::kOptimizerStepName, protocols::Tensor::FromFloats({1}, std::vector<float>{static_cast<float>(h.steps)})));
    FEDFM_ASSIGN_OR_RETURN(update.coverage, protocols::WithOptimizerStateCoverage(state, forward->coverage()));
  }
  update.num_examples = static_cast<uint64_t>(h.steps) * h.accumulation * h.batch;
  update.peak_memory_bytes = peak > 0 ? static_cast<uint64_t>(peak) : 0;
  update.metrics["train_loss"] = loss_sum / h.steps;
  update.metrics["train_loss_first"] = first_loss;
  update.metrics["train_loss_last"] = last_loss;
  update.metrics["steps"] = h.steps;
  update.metrics["tokens"] = static_cast<double>(tokens);
  update.metrics["tokens_per_s"] = seconds > 0 ? tokens / seconds : 0.0;
  update.metrics["train_seconds"] = seconds;
  update.metrics["trainable_parameters"] = static_cast<double>(forward->num_parameters());
  update.metrics["peak_memory_bytes"] = static_cast<double>(peak);
  update.metrics["grad_norm_last"] = grad_norm;
  return update;
}

absl::StatusOr<protocols::EvalReport> EvaluatePeftImpl(const std::shared_ptr<const model::Model>& model,
                                                       const PeftTrainerOptions& options,
                                                       const protocols::Task& task, const TrainableState& state,
                                                       const Dataset& data) {
  if (data.eval.empty()) return absl::InvalidArgumentError("no evaluation examples");
  if (options.eval_batch_size < 1) return absl::InvalidArgumentError("eval_batch_size must be >= 1");
  FEDFM_ASSIGN_OR_RETURN(std::unique_ptr<peft::StateForward> forward,
                         MakeForward(model, options, state, {}, /*dropout_seed=*/0, data));
  const bool classification = data.num_labels > 0;
  torch::NoGradGuard no_grad;
  double loss_sum = 0;
  int64_t count = 0, correct = 0, tokens = 0;
  const size_t n = data.eval.size(), b = static_cast<size_t>(options.eval_batch_size);
  DeviceBatch batch;  // its tensors are reused from batch to batch
  for (size_t begin = 0; begin < n; begin += b) {
    std::vector<size_t> indices;
    for (size_t i = begin; i < std::min(n, begin + b); ++i) indices.push_back(i);
    const model::Batch host = model::MakeBatch(data.eval, indices, /*pad_id=*/0, std::max(0, task.seq_len));
    ToDevice(host, model->device(), classification, &batch);
    internal::Bf16AutocastGuard autocast(model->device(), options.train.bf16_autocast);
    const BatchLoss l = Loss(*forward, batch, classification, /*count_correct=*/true);
    if (l.count == 0) continue;
    loss_sum += l.loss.item<double>() * static_cast<double>(l.count);
    count += l.count;
    correct += l.correct;
    tokens += batch.tokens;
  }
  if (count == 0) return absl::InvalidArgumentError("the evaluation examples have no targets");
  protocols::EvalReport report;
  report.num_examples = n;
  report.metrics["eval_loss"] = loss_sum / static_cast<double>(count);
  report.metrics["eval_tokens"] = static_cast<double>(tokens);
  if (classification) report.metrics["eval_accuracy"] = static_cast<double>(correct) / static_cast<double>(count);
  return report;
}

}  // namespace

bool CoverageWithin(const protocols::Coverage& inner, const protocols::Coverage& outer, std::string* why) {
  for (const protocols::TensorCoverage& c : inner.tensors) {
    const protocols::TensorCoverage* o = outer.Find(c.name);
    if (o == nullptr) {
      *why = absl::StrCat("tensor \"", c.name, "\" is not in the task's coverage");
      return false;
    }
    if (o->rank_dim < 0) continue;
    if (c.rank_dim != o->rank_dim || c.rank > o->rank) {
      *why = absl::StrCat("tensor \"", c.name, "\": the task covers rank ", o->rank, " along dim ", o->rank_dim,
                          ", training needs ", c.rank_dim < 0 ? std::string("the whole tensor")
                                                              : absl::StrCat("rank ", c.rank));
      return false;
    }
  }
  return true;
}

absl::StatusOr<protocols::Update> TrainPeft(const std::shared_ptr<const model::Model>& model,
                                            const PeftTrainerOptions& options, uint64_t seed,
                                            const protocols::Task& task, const peft::TrainRequest& request,
                                            const TrainableState& state, const Dataset& data) {
  if (model == nullptr) return absl::FailedPreconditionError("trainer has no model");
  try {
    return TrainPeftImpl(model, options, seed, task, request, state, data);
  } catch (const c10::Error& e) {
    return FromTorchError("training failed", e);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("training failed: out of memory");
  }
}

absl::StatusOr<protocols::EvalReport> EvaluatePeft(const std::shared_ptr<const model::Model>& model,
                                                   const PeftTrainerOptions& options, const protocols::Task& task,
                                                   const TrainableState& state, const Dataset& data) {
  if (model == nullptr) return absl::FailedPreconditionError("trainer has no model");
  try {
    return EvaluatePeftImpl(model, options, task, state, data);
  } catch (const c10::Error& e) {
    return FromTorchError("evaluation failed", e);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("evaluation failed: out of memory");
  }
}

}  // namespace fedfm::client
