// fedfm train (local centralized fine-tuning, the baseline of every federated
// run) and fedfm bench train. Thin: flags and config in,
// client/local_training.h does the work (torch-free header), progress on
// stderr, one JSON object on stdout.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "client/local_training.h"
#include "model/runtime.h"
#include "model/trace.h"
#include "protocols/config/config.h"

namespace fedfm::cli {
namespace {

using nlohmann::json;

// The flags of `fedfm train`; an option given on the command line overrides
// the config file, which overrides the schema's defaults.
struct TrainFlags {
  std::string config;
  std::string model, tokenizer, data, format, method = "lora";
  std::string out;
  std::string optimizer, dtype, device;
  std::vector<std::string> targets;
  double dropout = 0;
  bool rslora = false, freeze_a = false;
  int rank = 0, steps = 0, batch = 0, seq_len = 0, top_blocks = 0, accumulation = 0;
  double lr = 0, alpha = 0, eval_fraction = 0, fedprox_mu = 0;
  uint64_t seed = 0;
  bool full_weights = false;
  // zo
  double epsilon = 0, zo_lr = 0, zo_weight_decay = 0;
  int perturbations = 0, seed_pool = 0;
  std::string noise, estimator;
  int log_every = 10;
  int eval_max = 256;
};

// The data format of a file named on the command line without --format:
// by extension (.tsv, .csv, .jsonl, .tsv.gz = SpamAssassin), the bundled tiny
// Shakespeare by speaker, anything else plain text.
std::string FormatOf(const std::string& path) {
  auto ends_with = [&path](const std::string& suffix) {
    return path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends_with(".tsv.gz")) return "spamassassin";
  if (ends_with(".tsv")) return "tsv";
  if (ends_with(".csv")) return "csv";
  if (ends_with(".jsonl")) return "jsonl";
  if (ends_with("tinyshakespeare/input.txt")) return "shakespeare";
  return "text";
}

std::string Eta(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buffer[32];
  if (s >= 3600) {
    std::snprintf(buffer, sizeof(buffer), "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buffer, sizeof(buffer), "%lld:%02lld", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  }
  return buffer;
}

// Progress on stderr: one updating line on a terminal, plain lines every
// `every` steps (and the last) otherwise.
std::function<void(const client::TrainProgress&)> ProgressPrinter(int every) {
  const bool tty = isatty(fileno(stderr)) != 0;
  return [tty, every](const client::TrainProgress& p) {
    const double tokens_per_s = p.elapsed_s > 0 ? static_cast<double>(p.tokens) / p.elapsed_s : 0;
    const double eta = p.step > 0 ? p.elapsed_s / p.step * (p.steps - p.step) : NAN;
    if (tty) {
      std::fprintf(stderr, "\r\033[Ktrain: step %d/%d  loss %.4f  %.0f tok/s  ETA %s", p.step, p.steps, p.loss,
                   tokens_per_s, Eta(eta).c_str());
      if (p.step == p.steps) std::fprintf(stderr, "\n");
    } else if (p.step % std::max(1, every) == 0 || p.step == p.steps || p.step == 1) {
      std::fprintf(stderr, "train: step %d/%d loss %.4f tokens/s %.0f elapsed %.1fs eta %s\n", p.step, p.steps,
                   p.loss, tokens_per_s, p.elapsed_s, Eta(eta).c_str());
    }
    std::fflush(stderr);
  };
}

int RunTrain(const TrainFlags& f, const CLI::App& cmd) {
  auto given = [&cmd](const char* flag) { return cmd.count(flag) > 0; };
  protocols::RunConfig config;
  if (!f.config.empty()) {
    absl::StatusOr<protocols::RunConfig> loaded = protocols::LoadRunConfig(f.config);
    if (!loaded.ok()) return Fail("train", loaded.status());
    config = *std::move(loaded);
  }
  if (given("--model")) config.model.path = f.model;
  if (given("--tokenizer")) config.model.tokenizer = f.tokenizer;
  if (given("--data")) {
    config.data.path = f.data;
    if (!given("--format")) config.data.format = FormatOf(f.data);
  }
  if (given("--format")) config.data.format = f.format;
  if (given("--dtype")) config.model.dtype = f.dtype == "bf16" ? protocols::ModelDType::kBF16 : protocols::ModelDType::kF32;
  if (given("--device")) config.model.device = f.device == "cuda" ? protocols::DeviceKind::kCuda : protocols::DeviceKind::kCpu;
  if (given("--rank")) config.lora.rank = f.rank;
  if (given("--alpha")) config.lora.alpha = f.alpha;
  if (given("--targets")) config.lora.targets = f.targets;
  if (given("--dropout")) config.lora.dropout = f.dropout;
  if (given("--rslora")) config.lora.rslora = f.rslora;
  if (given("--freeze-a")) config.lora.freeze_a = f.freeze_a;
  if (given("--steps")) config.train.local_steps = f.steps;
  if (given("--batch")) config.train.batch_size = f.batch;
  if (given("--grad-accumulation")) config.train.grad_accumulation = f.accumulation;
  if (given("--seq-len")) config.data.seq_len = f.seq_len;
  if (given("--lr")) config.train.learning_rate = f.lr;
  if (given("--optimizer")) config.train.optimizer = f.optimizer;
  if (given("--fedprox-mu")) config.train.fedprox_mu = f.fedprox_mu;
  if (given("--seed")) config.run.seed = f.seed;
  if (given("--eval-fraction")) config.data.eval_fraction = f.eval_fraction;
  if (given("--top-blocks")) config.partial.top_blocks = f.top_blocks;
  if (given("--full-weights")) config.partial.full_weights = f.full_weights;
  if (given("--epsilon")) config.zeroth_order.epsilon = f.epsilon;
  if (given("--zo-lr")) config.zeroth_order.learning_rate = f.zo_lr;
  if (given("--perturbations")) config.zeroth_order.perturbations = f.perturbations;
  if (given("--zo-weight-decay")) config.zeroth_order.weight_decay = f.zo_weight_decay;
  if (given("--noise")) config.zeroth_order.noise = f.noise;
  if (given("--estimator")) config.zeroth_order.estimator = f.estimator;
  if (given("--seed-pool")) config.zeroth_order.seed_pool = f.seed_pool;
  // Re-check the merged configuration with the schema's own rules.
  absl::StatusOr<protocols::RunConfig> checked =
      protocols::ParseRunConfig(protocols::RunConfigToToml(config), "command line and config");
  if (!checked.ok()) {
    std::fprintf(stderr, "fedfm train: %s\n", std::string(checked.status().message()).c_str());
    return kExitUsage;
  }

  client::LocalTrainRequest request;
  request.config = *std::move(checked);
  request.method = f.method == "partial" ? protocols::Method::kPartial
                   : f.method == "zo"      ? protocols::Method::kZerothOrder
                                           : protocols::Method::kLora;
  request.out = f.out;
  request.eval_max_examples = f.eval_max;
  request.on_step = ProgressPrinter(f.log_every);
  std::fprintf(stderr, "train: %s on %s (%s), %d steps of %d x %d tokens -> %s\n", f.method.c_str(),
               request.config.data.path.c_str(), request.config.model.path.c_str(), request.config.train.local_steps,
               request.config.train.batch_size, request.config.data.seq_len, f.out.c_str());
  absl::StatusOr<client::LocalTrainResult> result = client::RunLocalTraining(request);
  if (!result.ok()) return Fail("train", result.status());
  const std::map<std::string, double>& m = result->update.metrics;
  json out{{"out", result->out.string()},
           {"method", f.method},
           {"train_examples", result->train_examples},
           {"eval_examples", result->eval_examples},
           {"eval_loss_before", result->eval_loss_before},
           {"eval_loss_after", result->eval_loss_after},
           {"train_loss_first", m.at("train_loss_first")},
           {"train_loss_last", m.at("train_loss_last")},
           {"steps", m.at("steps")},
           {"trainable_parameters", m.at("trainable_parameters")},
           {"tokens_per_s", m.at("tokens_per_s")},
           {"peak_memory_bytes", m.at("peak_memory_bytes")},
           {"train_seconds", m.at("train_seconds")},
           {"total_seconds", result->seconds}};
  if (f.method == "zo") {
    out["seed_pool"] = request.config.zeroth_order.seed_pool;
    out["seed_scalar_bytes"] = 4 * result->update.seed_scalars.size();
  }
  if (result->num_labels > 0) {
    out["eval_accuracy_before"] = result->eval_accuracy_before;
    out["eval_accuracy_after"] = result->eval_accuracy_after;
  }
  std::printf("%s\n", out.dump().c_str());
  return kExitOk;
}

}  // namespace

void RegisterTrainCommand(CLI::App& app, Action& action, const GlobalFlags&) {
  CLI::App* cmd = app.add_subcommand(
      "train", "Local centralized fine-tuning (LoRA, partial layers or zeroth order): the baseline of federated runs");
  auto f = std::make_shared<TrainFlags>();
  const protocols::RunConfig defaults;
  f->model = defaults.model.path;
  f->tokenizer = defaults.model.tokenizer;
  f->data = defaults.data.path;
  cmd->add_option("--config", f->config, "Run config (TOML); flags override its keys");
  cmd->add_option("--model", f->model, "llama2.c .bin file or Hugging Face directory")->capture_default_str();
  cmd->add_option("--tokenizer", f->tokenizer, "tokenizer .bin (llama2.c) or tokenizer.json")->capture_default_str();
  cmd->add_option("--data", f->data, "Training data file")->capture_default_str();
  cmd->add_option("--format", f->format,
                  "Data format: shakespeare | text | tsv | csv | spamassassin | jsonl (default: from --config, or "
                  "from the --data file's extension)")
      ->check(CLI::IsMember({"shakespeare", "text", "tsv", "csv", "spamassassin", "jsonl"}));
  cmd->add_option("--method", f->method, "lora | partial | zo")
      ->check(CLI::IsMember({"lora", "partial", "zo"}))
      ->capture_default_str();
  cmd->add_option("--rank", f->rank, "LoRA rank")->check(CLI::Range(1, 256));
  cmd->add_option("--alpha", f->alpha, "LoRA alpha")->check(CLI::PositiveNumber);
  cmd->add_option("--targets", f->targets, "LoRA target projections (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj)")
      ->delimiter(',');
  cmd->add_option("--dropout", f->dropout, "LoRA dropout")->check(CLI::Range(0.0, 0.99));
  cmd->add_flag("--rslora", f->rslora, "rsLoRA scaling alpha / sqrt(r)");
  cmd->add_flag("--freeze-a", f->freeze_a, "FFA-LoRA: keep A at its seeded initial values, train B only");
  cmd->add_option("--steps", f->steps, "Optimizer steps")->check(CLI::Range(1, 1000000));
  cmd->add_option("--batch", f->batch, "Sequences per micro-batch")->check(CLI::Range(1, 65536));
  cmd->add_option("--grad-accumulation", f->accumulation, "Micro-batches per step")->check(CLI::Range(1, 1024));
  cmd->add_option("--seq-len", f->seq_len, "Tokens per sequence")->check(CLI::Range(2, 65536));
  cmd->add_option("--lr", f->lr, "Learning rate")->check(CLI::PositiveNumber);
  cmd->add_option("--optimizer", f->optimizer, "adamw | sgd")->check(CLI::IsMember({"adamw", "sgd"}));
  cmd->add_option("--fedprox-mu", f->fedprox_mu, "Proximal term towards the start (0 = off)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-blocks", f->top_blocks, "partial: blocks that train (k)")->check(CLI::Range(1, 10000));
  cmd->add_flag("--full-weights", f->full_weights, "partial: train the top blocks' full weights, not adapters");
  cmd->add_option("--out", f->out, "Output directory: adapter (HF PEFT layout) and metrics.json")->required();
  cmd->add_option("--seed", f->seed, "Seed of initialisation, split, batch order and dropout");
  cmd->add_option("--eval-fraction", f->eval_fraction, "Held-out fraction of the data")->check(CLI::Range(0.0, 0.5));
  cmd->add_option("--eval-max", f->eval_max, "Evaluate on at most this many held-out examples (0 = all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--dtype", f->dtype, "Model precision: f32 or bf16")->check(CLI::IsMember({"f32", "bf16"}));
  cmd->add_option("--device", f->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--log-every", f->log_every, "Without a terminal: a progress line every N steps")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  cmd->add_option("--epsilon", f->epsilon, "zo: perturbation scale")->check(CLI::PositiveNumber);
  cmd->add_option("--zo-lr", f->zo_lr, "zo: learning rate")->check(CLI::PositiveNumber);
  cmd->add_option("--perturbations", f->perturbations, "zo: perturbations per step")->check(CLI::Range(1, 1024));
  cmd->add_option("--zo-weight-decay", f->zo_weight_decay, "zo: weight decay (needs --seed-pool 0)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--noise", f->noise, "zo: gaussian | rademacher")->check(CLI::IsMember({"gaussian", "rademacher"}));
  cmd->add_option("--estimator", f->estimator, "zo: spsa (two forward passes) | forward (forward-mode AD)")
      ->check(CLI::IsMember({"spsa", "forward"}));
  cmd->add_option("--seed-pool", f->seed_pool,
                  "zo: K shared seeds of the round (the update is K scalars, replayed into the adapter); 0 = dense")
      ->check(CLI::Range(0, 65536));
  cmd->callback([&action, f, cmd] { action = [f, cmd] { return RunTrain(*f, *cmd); }; });
}

void RegisterTrainBench(CLI::App& bench, Action& action, const GlobalFlags&) {
  CLI::App* cmd = bench.add_subcommand("train", "LoRA / partial-layer training step time, tokens/s and peak memory");
  auto req = std::make_shared<client::BenchTrainRequest>();
  auto method = std::make_shared<std::string>("lora");
  auto threads = std::make_shared<int>(0);
  cmd->add_option("--model", req->model, "llama2.c .bin file or Hugging Face directory")->capture_default_str();
  cmd->add_option("--method", *method, "lora | partial")->check(CLI::IsMember({"lora", "partial"}))->capture_default_str();
  cmd->add_option("--rank", req->rank, "LoRA rank")->check(CLI::Range(1, 256))->capture_default_str();
  cmd->add_option("--targets", req->targets, "LoRA target projections")->capture_default_str();
  cmd->add_option("--top-blocks", req->top_blocks, "partial: k")->check(CLI::Range(1, 10000))->capture_default_str();
  cmd->add_flag("--full-weights", req->full_weights, "partial: train full block weights");
  cmd->add_option("--batch", req->batch, "Sequences per step")->check(CLI::Range(1, 65536))->capture_default_str();
  cmd->add_option("--seq-len", req->seq_len, "Tokens per sequence")->check(CLI::Range(2, 65536))->capture_default_str();
  cmd->add_option("--steps", req->steps, "Timed steps")->check(CLI::Range(1, 1000000))->capture_default_str();
  cmd->add_option("--warmup", req->warmup, "Untimed steps first")->check(CLI::Range(0, 1000))->capture_default_str();
  cmd->add_option("--optimizer", req->optimizer, "adamw | sgd")->check(CLI::IsMember({"adamw", "sgd"}))->capture_default_str();
  cmd->add_option("--threads", *threads, "LibTorch intra-op threads (0 = keep the global setting)")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--dtype", req->dtype, "f32 | bf16")->check(CLI::IsMember({"f32", "bf16"}))->capture_default_str();
  cmd->add_option("--device", req->device, "cpu or cuda[:N]")->capture_default_str();
  cmd->add_option("--seed", req->seed, "Seed of the random tokens and the adapter")->capture_default_str();
  auto trace = std::make_shared<std::string>();
  cmd->add_option("--trace", *trace, "Also write a Chrome trace of the LibTorch operators and CUDA kernels to FILE");
  cmd->callback([&action, req, method, threads, trace] {
    action = [req, method, threads, trace] {
      if (*threads > 0) model::SetTorchThreads(*threads);
      req->method = *method == "partial" ? protocols::Method::kPartial : protocols::Method::kLora;
      absl::StatusOr<client::BenchTrainResult> r =
          model::Traced(*trace, req->device.rfind("cuda", 0) == 0, [&] { return client::BenchTrain(*req); });
      if (!r.ok()) return Fail("bench train", r.status());
      json out{{"benchmark", "train"},
               {"method", *method},
               {"model", req->model.string()},
               {"model_parameters", r->model_parameters},
               {"trainable_parameters", r->trainable_parameters},
               {"rank", req->rank},
               {"targets", req->targets},
               {"batch", req->batch},
               {"seq_len", req->seq_len},
               {"steps", req->steps},
               {"warmup", req->warmup},
               {"optimizer", req->optimizer},
               {"device", req->device},
               {"dtype", req->dtype},
               {"threads", model::TorchThreads()},
               {"cores", std::thread::hardware_concurrency()},
               {"torch_version", model::TorchVersion()},
               {"ms_per_step", r->ms_per_step},
               {"ms_per_step_median", r->ms_per_step_median},
               {"ms_per_step_min", r->ms_per_step_min},
               {"tokens_per_s", r->tokens_per_s},
               {"peak_memory_bytes", r->peak_memory_bytes},
               {"final_loss", r->final_loss}};
      if (*method == "partial") out["top_blocks"] = r->top_blocks;
      // The comparison with plain PyTorch is measured side by side:
      // bench/cpu/compare_lora_step.sh.
      std::printf("%s\n", out.dump().c_str());
      return kExitOk;
    };
  });
}

}  // namespace fedfm::cli
