#include "client/local_training.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <system_error>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "client/lora_trainer.h"
#include "client/partial_trainer.h"
#include "client/zeroth_order_trainer.h"
#include "model/dataset.h"
#include "model/dataset_rng.h"
#include "model/loader.h"
#include "model/tokenizer.h"
#include "peft/adapter_io.h"
#include "peft/trainable.h"
#include "protocols/config/config.h"
#include "protocols/file_util.h"
#include "protocols/status_macros.h"
#include "zeroth_order/noise.h"
#include "zeroth_order/seed_pool.h"

namespace fedfm::client {
namespace {

using Clock = std::chrono::steady_clock;
using protocols::Method;
using protocols::TensorMap;

// Seed purposes under run.seed.
constexpr uint64_t kInitPurpose = 101;
constexpr uint64_t kTrainerPurpose = 102;
constexpr uint64_t kSplitPurpose = 103;

// Examples of one data file, and the number of classes (0: next-token).
struct Examples {
  std::vector<model::Example> examples;
  int num_labels = 0;
  std::vector<std::string> label_names;
};

absl::StatusOr<Examples> ReadExamples(const std::filesystem::path& path, const protocols::DataOptions& data,
                                      const model::Tokenizer& tok, const std::vector<std::string>& label_names) {
  Examples out;
  const std::string& format = data.format;
  model::ReadOptions read;
  read.label_names = label_names;
  if (format == "shakespeare" || format == "text") {
    model::GroupedTexts texts;
    if (format == "shakespeare") {
      FEDFM_ASSIGN_OR_RETURN(texts, model::ReadShakespeareBySpeaker(path, read));
    } else {
      FEDFM_ASSIGN_OR_RETURN(texts, model::ReadPlainText(path));
    }
    model::WindowOptions w;
    w.seq_len = data.seq_len;
    out.examples = model::MakeLmExamples(tok, texts, w);
  } else if (format == "tsv" || format == "csv" || format == "spamassassin") {
    model::LabeledTexts texts;
    if (format == "tsv") {
      FEDFM_ASSIGN_OR_RETURN(texts, model::ReadLabeledTsv(path, read));
    } else if (format == "csv") {
      FEDFM_ASSIGN_OR_RETURN(texts, model::ReadLabeledCsv(path, read));
    } else {
      FEDFM_ASSIGN_OR_RETURN(texts, model::ReadSpamAssassin(path, read));
    }
    model::ClassificationOptions c;
    c.max_len = data.seq_len;
    out.examples = model::MakeClassificationExamples(tok, texts, c);
    out.num_labels = static_cast<int>(texts.label_names.size());
    out.label_names = texts.label_names;
  } else if (format == "jsonl") {
    FEDFM_ASSIGN_OR_RETURN(model::PromptResponses pairs, model::ReadPromptResponseJsonl(path, read));
    model::PromptResponseOptions p;
    p.max_len = data.seq_len;
    out.examples = model::MakePromptResponseExamples(tok, pairs, p);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("data.format \"", format, "\" is not one of shakespeare, text, "
                                                   "tsv, csv, spamassassin, jsonl"));
  }
  if (out.examples.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": no examples (data.format \"", format,
                                                   "\", seq_len ", data.seq_len, ")"));
  }
  return out;
}

absl::StatusOr<TensorMap> ApplyDelta(const TensorMap& state, const TensorMap& delta) {
  TensorMap out;
  for (const auto& [name, t] : state) {
    const protocols::Tensor* d = delta.Find(name);
    if (d == nullptr) {
      FEDFM_RETURN_IF_ERROR(out.Insert(name, t));
      continue;
    }
    protocols::Tensor sum = t.dtype() == protocols::DType::kF32 ? t : t.To(protocols::DType::kF32);
    std::span<float> s = sum.mutable_floats();
    std::span<const float> dv = d->floats();
    if (dv.size() != s.size()) {
      return absl::InternalError(absl::StrCat("delta of \"", name, "\" has ", dv.size(), " values, state ", s.size()));
    }
    for (size_t i = 0; i < s.size(); ++i) s[i] += dv[i];
    FEDFM_RETURN_IF_ERROR(out.Insert(name, std::move(sum)));
  }
  return out;
}

nlohmann::json MetricsJson(const std::map<std::string, double>& metrics) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : metrics) j[k] = std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
  return j;
}

absl::Status TorchError(const char* what, const c10::Error& e) {
  return absl::InternalError(absl::StrCat(what, ": ", e.what_without_backtrace()));
}

absl::StatusOr<LocalTrainResult> RunLocalTrainingImpl(const LocalTrainRequest& request) {
  const auto start = Clock::now();
  const protocols::RunConfig& config = request.config;
  const Method method = request.method == Method::kAuto ? Method::kLora : request.method;
  if (method != Method::kLora && method != Method::kPartial && method != Method::kZerothOrder) {
    return absl::UnimplementedError(
        absl::StrCat("local training with method \"", protocols::MethodName(method), "\" is not built here"));
  }
  FEDFM_ASSIGN_OR_RETURN(peft::LoraSpec spec, peft::LoraSpecFromOptions(config.lora));
  FEDFM_ASSIGN_OR_RETURN(model::ModelOptions model_options, model::ModelOptionsFromConfig(config.model));
  FEDFM_ASSIGN_OR_RETURN(std::shared_ptr<const model::Model> model, model::LoadModel(config.model.path, model_options));
  FEDFM_ASSIGN_OR_RETURN(std::unique_ptr<model::Tokenizer> tok, model::LoadTokenizer(config.model.tokenizer));
  if (tok->vocab_size() > model->config().vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer ", config.model.tokenizer, " has ", tok->vocab_size(),
                                                   " ids but model ", config.model.path, " only ",
                                                   model->config().vocab_size));
  }
  if (config.data.seq_len > model->config().max_seq_len) {
    return absl::InvalidArgumentError(absl::StrCat("data.seq_len ", config.data.seq_len, " exceeds the model's ",
                                                   model->config().max_seq_len, " positions"));
  }

  LocalTrainResult result;
  result.out = request.out;
  Dataset data;
  FEDFM_ASSIGN_OR_RETURN(Examples all, ReadExamples(config.data.path, config.data, *tok, {}));
  data.num_labels = all.num_labels;
  if (!config.data.eval_path.empty()) {
    FEDFM_ASSIGN_OR_RETURN(Examples eval, ReadExamples(config.data.eval_path, config.data, *tok, all.label_names));
    data.train = std::move(all.examples);
    data.eval = std::move(eval.examples);
  } else {
    const model::TrainEvalSplit split = model::SplitTrainEval(
        all.examples.size(), config.data.eval_fraction, model::DeriveSeed(config.run.seed, kSplitPurpose));
    for (size_t i : split.train) data.train.push_back(std::move(all.examples[i]));
    for (size_t i : split.eval) data.eval.push_back(std::move(all.examples[i]));
  }
  if (data.eval.empty()) return absl::InvalidArgumentError("no held-out examples: raise data.eval_fraction");
  if (request.eval_max_examples > 0 && data.eval.size() > static_cast<size_t>(request.eval_max_examples)) {
    data.eval.resize(static_cast<size_t>(request.eval_max_examples));
  }
  result.train_examples = static_cast<int64_t>(data.train.size());
  result.eval_examples = static_cast<int64_t>(data.eval.size());
  result.num_labels = data.num_labels;

  const int n_layers = static_cast<int>(model->config().n_layers);
  const bool full_weights = method == Method::kPartial && config.partial.full_weights;
  result.top_blocks = method == Method::kPartial ? std::clamp(config.partial.top_blocks, 1, n_layers) : n_layers;
  peft::StateLayout layout;
  layout.lora = spec;
  layout.lora_adapters = !full_weights;
  layout.full_weight_blocks = full_weights ? result.top_blocks : 0;
  layout.num_labels = data.num_labels;
  FEDFM_ASSIGN_OR_RETURN(TensorMap state,
                         peft::InitTrainableState(*model, layout, model::DeriveSeed(config.run.seed, kInitPurpose)));

  PeftTrainerOptions options;
  options.train = config.train;
  options.lora = spec;
  options.partial = config.partial;
  options.on_step = [&](const TrainProgress& p) {
    result.losses.push_back(p.loss);
    if (request.on_step) request.on_step(p);
  };
  protocols::Task task;
  task.method = method;
  task.lora_rank = spec.rank;
  task.top_blocks = method == Method::kPartial ? result.top_blocks : 0;
  task.partial_full_weights = full_weights;
  task.local_steps = config.train.local_steps;
  task.batch_size = config.train.batch_size;
  task.grad_accumulation = config.train.grad_accumulation;
  task.seq_len = config.data.seq_len;
  task.learning_rate = config.train.learning_rate;
  task.weight_decay = config.train.weight_decay;
  task.grad_clip = config.train.grad_clip;
  task.fedprox_mu = config.train.fedprox_mu;
  task.round_seed = config.run.seed;
  // Zeroth order: one round of the run's seed pool (0 = dense updates).
  const protocols::ZerothOrderOptions& zo = config.zeroth_order;
  task.zo_epsilon = zo.epsilon;
  task.zo_learning_rate = zo.learning_rate;
  task.zo_perturbations = zo.perturbations;
  if (method == Method::kZerothOrder && zo.seed_pool > 0) {
    task.seed_pool = zeroth_order::SeedPool::ForRound(config.run.seed, /*round=*/0, zo.seed_pool).seeds();
  }
  std::unique_ptr<Trainer> trainer;
  const uint64_t trainer_seed = model::DeriveSeed(config.run.seed, kTrainerPurpose);
  if (method == Method::kLora) {
    trainer = std::make_unique<LoraTrainer>(model, options, trainer_seed);
  } else if (method == Method::kZerothOrder) {
    ZerothOrderTrainerOptions zo_options;
    zo_options.zo = zo;
    zo_options.train = config.train;
    zo_options.lora = spec;
    zo_options.on_step = options.on_step;
    trainer = std::make_unique<ZerothOrderTrainer>(model, zo_options, trainer_seed);
  } else {
    trainer = std::make_unique<PartialLayerTrainer>(model, options, trainer_seed);
  }

  FEDFM_ASSIGN_OR_RETURN(protocols::EvalReport before, trainer->Evaluate(task, state, data));
  FEDFM_ASSIGN_OR_RETURN(result.update, trainer->Train(task, state, data));
  TensorMap delta = result.update.delta;
  if (result.update.kind == protocols::UpdateKind::kSeedScalars) {
    // The coordinator's replay of the seed scalars (zeroth_order/seed_pool.h).
    FEDFM_ASSIGN_OR_RETURN(zeroth_order::NoiseKind kind, zeroth_order::ParseNoiseKind(zo.noise));
    const std::vector<double> scalars(result.update.seed_scalars.begin(), result.update.seed_scalars.end());
    FEDFM_ASSIGN_OR_RETURN(delta, zeroth_order::SeedPoolDelta(state, zeroth_order::SeedPool(task.seed_pool), scalars,
                                                              zo.learning_rate, kind));
  }
  FEDFM_ASSIGN_OR_RETURN(TensorMap trained, ApplyDelta(state, delta));
  FEDFM_ASSIGN_OR_RETURN(protocols::EvalReport after, trainer->Evaluate(task, trained, data));
  result.eval_loss_before = before.metrics.at("eval_loss");
  result.eval_loss_after = after.metrics.at("eval_loss");
  if (data.num_labels > 0) {
    result.eval_accuracy_before = before.metrics.at("eval_accuracy");
    result.eval_accuracy_after = after.metrics.at("eval_accuracy");
  }

  FEDFM_ASSIGN_OR_RETURN(peft::Adapter adapter, peft::SaveStateAsAdapter(request.out, trained, spec, config.model.path));
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();

  nlohmann::json j;
  j["method"] = protocols::MethodName(method);
  j["model"] = config.model.path;
  j["tokenizer"] = config.model.tokenizer;
  j["data"] = config.data.path;
  j["data_format"] = config.data.format;
  j["seed"] = config.run.seed;
  j["train_examples"] = result.train_examples;
  j["eval_examples"] = result.eval_examples;
  j["seq_len"] = config.data.seq_len;
  j["batch_size"] = task.batch_size;
  j["grad_accumulation"] = task.grad_accumulation;
  j["steps"] = task.local_steps;
  j["optimizer"] = config.train.optimizer;
  j["learning_rate"] = task.learning_rate;
  j["lora"] = {{"rank", spec.rank}, {"alpha", spec.alpha},   {"dropout", spec.dropout},
               {"rslora", spec.rslora}, {"freeze_a", spec.freeze_a}, {"targets", adapter.config.target_modules}};
  if (method == Method::kPartial) {
    j["partial"] = {{"top_blocks", result.top_blocks}, {"full_weights", full_weights}};
  }
  if (method == Method::kZerothOrder) {
    j["optimizer"] = "zo";
    j["learning_rate"] = zo.learning_rate;
    j["zeroth_order"] = {{"epsilon", zo.epsilon},         {"learning_rate", zo.learning_rate},
                         {"perturbations", zo.perturbations}, {"weight_decay", zo.weight_decay},
                         {"noise", zo.noise},             {"estimator", zo.estimator},
                         {"seed_pool", zo.seed_pool},     {"seed_scalar_bytes", 4 * task.seed_pool.size()}};
  }
  j["eval_loss_before"] = result.eval_loss_before;
  j["eval_loss_after"] = result.eval_loss_after;
  if (data.num_labels > 0) {
    j["num_labels"] = data.num_labels;
    j["eval_accuracy_before"] = result.eval_accuracy_before;
    j["eval_accuracy_after"] = result.eval_accuracy_after;
  }
  j["loss_curve"] = result.losses;
  j["train"] = MetricsJson(result.update.metrics);
  j["peak_memory_bytes"] = result.update.metrics.at("peak_memory_bytes");
  j["tokens_per_s"] = result.update.metrics.at("tokens_per_s");
  j["train_seconds"] = result.update.metrics.at("train_seconds");
  j["total_seconds"] = result.seconds;
  result.metrics_json = j.dump(2) + "\n";
  FEDFM_RETURN_IF_ERROR(protocols::WriteFileAtomic(request.out / "metrics.json", result.metrics_json));
  return result;
}

absl::StatusOr<BenchTrainResult> BenchTrainImpl(const BenchTrainRequest& request) {
  if (request.batch < 1 || request.seq_len < 2 || request.steps < 1 || request.warmup < 0) {
    return absl::InvalidArgumentError("bench train needs batch >= 1, seq_len >= 2, steps >= 1, warmup >= 0");
  }
  const Method method = request.method == Method::kAuto ? Method::kLora : request.method;
  if (method != Method::kLora && method != Method::kPartial) {
    return absl::UnimplementedError(absl::StrCat("bench train: method \"", protocols::MethodName(method),
                                                 "\" is not built here"));
  }
  protocols::LoraOptions lora_options;
  lora_options.rank = request.rank;
  lora_options.alpha = 2.0 * request.rank;
  lora_options.targets = request.targets;
  FEDFM_ASSIGN_OR_RETURN(peft::LoraSpec spec, peft::LoraSpecFromOptions(lora_options));
  FEDFM_ASSIGN_OR_RETURN(model::ModelOptions model_options, model::ParseModelOptions(request.dtype, request.device));
  FEDFM_ASSIGN_OR_RETURN(std::shared_ptr<const model::Model> model, model::LoadModel(request.model, model_options));
  const model::ModelConfig& mc = model->config();
  if (request.seq_len > mc.max_seq_len) {
    return absl::InvalidArgumentError(absl::StrCat("seq_len ", request.seq_len, " exceeds the model's ",
                                                   mc.max_seq_len, " positions"));
  }
  const int n_layers = static_cast<int>(mc.n_layers);
  BenchTrainResult result;
  result.model_parameters = model->NumParameters();
  result.top_blocks = method == Method::kPartial ? std::clamp(request.top_blocks, 1, n_layers) : n_layers;
  const bool full_weights = method == Method::kPartial && request.full_weights;

  // One window per example, enough for every step without repeats.
  Dataset data;
  model::DataRng rng(request.seed);
  const int64_t total = static_cast<int64_t>(request.batch) * (request.steps + request.warmup);
  for (int64_t i = 0; i < total; ++i) {
    model::Example e;
    for (int t = 0; t <= request.seq_len; ++t) e.tokens.push_back(static_cast<int32_t>(rng.Uniform(mc.vocab_size)));
    e.targets.assign(e.tokens.begin() + 1, e.tokens.end());
    e.tokens.pop_back();
    data.train.push_back(std::move(e));
  }
  peft::StateLayout layout;
  layout.lora = spec;
  layout.lora_adapters = !full_weights;
  layout.full_weight_blocks = full_weights ? result.top_blocks : 0;
  FEDFM_ASSIGN_OR_RETURN(TensorMap state, peft::InitTrainableState(*model, layout, request.seed));

  std::vector<double> ends;
  PeftTrainerOptions options;
  options.train.optimizer = request.optimizer;
  options.train.bf16_autocast = request.bf16_autocast;
  options.lora = spec;
  options.on_step = [&](const TrainProgress& p) {
    ends.push_back(p.elapsed_s);
    result.final_loss = p.loss;
  };
  protocols::Task task;
  task.method = method;
  task.lora_rank = spec.rank;
  task.top_blocks = method == Method::kPartial ? result.top_blocks : 0;
  task.partial_full_weights = full_weights;
  task.local_steps = request.steps + request.warmup;
  task.batch_size = request.batch;
  task.seq_len = request.seq_len;
  task.learning_rate = 1e-3;
  task.round_seed = request.seed;
  std::unique_ptr<Trainer> trainer;
  if (method == Method::kLora) {
    trainer = std::make_unique<LoraTrainer>(model, options, request.seed);
  } else {
    trainer = std::make_unique<PartialLayerTrainer>(model, options, request.seed);
  }
  FEDFM_ASSIGN_OR_RETURN(protocols::Update update, trainer->Train(task, state, data));
  std::vector<double> times;
  for (size_t i = static_cast<size_t>(request.warmup); i < ends.size(); ++i) {
    times.push_back(ends[i] - (i == 0 ? 0.0 : ends[i - 1]));
  }
  if (times.empty()) return absl::InternalError("bench train: no timed steps");
  double sum = 0;
  for (double t : times) sum += t;
  const double mean = sum / static_cast<double>(times.size());
  std::vector<double> sorted = times;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  result.ms_per_step = 1000 * mean;
  result.ms_per_step_median = 1000 * (n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]));
  result.ms_per_step_min = 1000 * sorted.front();
  result.tokens_per_s = static_cast<double>(request.batch) * request.seq_len / mean;
  result.trainable_parameters = static_cast<int64_t>(update.metrics.at("trainable_parameters"));
  result.peak_memory_bytes = static_cast<int64_t>(update.metrics.at("peak_memory_bytes"));
  return result;
}

}  // namespace

absl::StatusOr<LocalTrainResult> RunLocalTraining(const LocalTrainRequest& request) {
  try {
    return RunLocalTrainingImpl(request);
  } catch (const c10::Error& e) {
    return TorchError("local training failed", e);
  }
}

absl::StatusOr<BenchTrainResult> BenchTrain(const BenchTrainRequest& request) {
  try {
    return BenchTrainImpl(request);
  } catch (const c10::Error& e) {
    return TorchError("bench train failed", e);
  }
}

}  // namespace fedfm::client
