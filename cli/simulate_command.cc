// fedfm simulate [--config FILE] [--set KEY=VALUE]... [--out DIR] [--rounds N] [--seed N]
//                [--clients N] [--workers N] [--device cpu|cuda] [--fake-trainers] [--quiet]
//
// With no --config: the embedded default scenario (examples/default_sim.toml).
// --set overrides any config key (protocols::ApplyOverrides); the named
// flags (--rounds, ...) apply after them.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/command.h"
#include "model/runtime.h"
#include "model/tokenizer.h"
#include "peft/adapter_io.h"
#include "protocols/config/config.h"
#include "simulation/data.h"
#include "simulation/default_scenario.h"
#include "simulation/report.h"
#include "simulation/simulation.h"
#include "simulation/trainers.h"

namespace fedfm::cli {
namespace {

struct SimulateFlags {
  std::string config;
  std::vector<std::string> set;
  std::string out;
  int rounds = 0;
  int64_t seed = -1;
  int clients = 0;
  int workers = -1;
  std::string device;  // empty: model.device
  bool fake_trainers = false;
  bool quiet = false;
};

std::string Duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 90) return absl::StrFormat("%.0f s", s);
  return absl::StrFormat("%.0f min %02.0f s", std::floor(s / 60), std::fmod(s, 60));
}

std::string Loss(double v) { return std::isfinite(v) ? absl::StrFormat("%.3f", v) : "-"; }

// One line per round on stdout.
std::string RoundLine(const simulation::RoundRecord& r, int64_t total) {
  if (r.round == 0) return absl::StrCat("round  0: eval loss ", Loss(r.eval_loss), " (initial state)");
  std::vector<std::string> by;
  int64_t dropped = 0, late = 0, other = 0;
  uint64_t up = 0;
  for (const auto& [m, s] : r.methods) {
    by.push_back(absl::StrCat(protocols::MethodName(m), " ", s.uploaded, "/", s.selected));
    dropped += s.dropped;
    late += s.stragglers;
    other += s.other;
    up += s.bytes_up;
  }
  std::string line = absl::StrFormat("round %2d/%d: ", r.round, total);
  if (!r.committed) return absl::StrCat(line, "attempt ", r.attempt, " failed: ", r.failure);
  absl::StrAppend(&line, r.evaluation ? "evaluation round, eval loss " : "eval loss ", Loss(r.eval_loss),
                  r.evaluation ? "" : absl::StrCat(", train loss ", Loss(r.train_loss)), " | uploaded ",
                  absl::StrJoin(by, ", "));
  if (dropped + late + other > 0) {
    absl::StrAppend(&line, " | dropped ", dropped, ", late ", late, other > 0 ? absl::StrCat(", other ", other) : "");
  }
  absl::StrAppend(&line, absl::StrFormat(" | %.0f KiB up | virtual %.2f s | wall %s", up / 1024.0,
                                         r.virtual_end_s, Duration(r.wall_total_s)));
  return line;
}

int Run(const SimulateFlags& f, const GlobalFlags& global) {
  const char* kCmd = "simulate";
  const auto setup_start = std::chrono::steady_clock::now();
  protocols::RunConfig config;
  std::string scenario;
  if (f.config.empty()) {
    absl::StatusOr<protocols::RunConfig> c =
        protocols::ParseRunConfig(simulation::DefaultScenarioToml(), simulation::kDefaultScenarioName);
    if (!c.ok()) return Fail(kCmd, c.status());
    config = *c;
    scenario = absl::StrCat("default scenario (", simulation::kDefaultScenarioName, ")");
  } else {
    absl::StatusOr<protocols::RunConfig> c = protocols::LoadRunConfig(f.config);
    if (!c.ok()) return Fail(kCmd, c.status());
    config = *c;
    scenario = f.config;
  }
  if (!f.set.empty()) {
    absl::StatusOr<protocols::RunConfig> c = protocols::ApplyOverrides(config, f.set);
    if (!c.ok()) return Fail(kCmd, c.status());
    config = *c;
    scenario = absl::StrCat(scenario, " with ", absl::StrJoin(f.set, ", "));
  }
  if (f.rounds > 0) config.run.rounds = f.rounds;
  if (f.seed >= 0) config.run.seed = static_cast<uint64_t>(f.seed);
  if (f.clients > 0) config.simulation.num_clients = f.clients;
  if (f.workers >= 0) config.simulation.threads = f.workers;
  if (!f.device.empty()) {
    config.model.device = f.device == "cuda" ? protocols::DeviceKind::kCuda : protocols::DeviceKind::kCpu;
  }
  if (absl::Status valid = protocols::ValidateRunConfig(config); !valid.ok()) return Fail(kCmd, valid);
  const std::string out = f.out.empty() ? config.simulation.out : f.out;

  // Threads: `workers` clients train at once, each with cores / workers
  // LibTorch intra-op threads, so that the total is about the core count.
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int workers = config.simulation.threads > 0 ? config.simulation.threads : cores;
  const int torch_threads = global.threads > 0 ? global.threads : std::max(1, cores / workers);
  model::SetTorchThreads(torch_threads);

  // The shared model and the data, loaded once.
  absl::StatusOr<std::unique_ptr<model::Tokenizer>> tokenizer = model::LoadTokenizer(config.model.tokenizer);
  if (!tokenizer.ok()) return Fail(kCmd, tokenizer.status());
  absl::StatusOr<simulation::SimData> data =
      simulation::LoadSimData(config, **tokenizer, config.simulation.num_clients, config.run.seed);
  if (!data.ok()) return Fail(kCmd, data.status());
  absl::StatusOr<std::unique_ptr<simulation::TrainerFactory>> trainers;
  if (f.fake_trainers) {
    absl::StatusOr<protocols::ModelDims> dims = simulation::ReadModelDims(config);
    if (!dims.ok()) return Fail(kCmd, dims.status());
    trainers = simulation::MakeFakeTrainerFactory(config, *dims);
  } else {
    trainers = simulation::MakeModelTrainerFactory(config, data->num_labels);
  }
  if (!trainers.ok()) return Fail(kCmd, trainers.status());
  absl::StatusOr<std::vector<simulation::FleetEntry>> plan = simulation::PlanFleet(config, **trainers);
  if (!plan.ok()) return Fail(kCmd, plan.status());

  simulation::RunContext context;
  context.model = (*trainers)->description();
  context.data = data->description;
  context.shared_bytes = (*trainers)->shared_bytes();
  context.torch_threads = torch_threads;
  context.cores = cores;
  context.machine = absl::StrCat(cores, " cores, LibTorch ", model::TorchVersion(),
                                 model::CudaAvailable() ? " with CUDA" : " (CPU)");
  context.setup_wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - setup_start).count();

  std::printf("fedfm simulate: %s\n", scenario.c_str());
  std::printf("  %d rounds, %d virtual clients (%d per round), SecAgg+ %s, deadline %g s of virtual time\n",
              config.run.rounds, config.simulation.num_clients, config.rounds.clients_per_round,
              config.secagg.enabled ? "on" : "off", config.rounds.deadline_s);
  std::printf("  model  %s\n  data   %s\n", context.model.c_str(), context.data.c_str());
  for (const simulation::FleetEntry& e : *plan) {
    std::string how = e.method;
    if (e.method == "lora") how = absl::StrCat("LoRA r=", e.lora_rank);
    if (e.method == "partial") how = absl::StrCat("partial layers k=", e.top_blocks);
    if (e.method == "zo") how = "zeroth order";
    std::printf("  %-12s x%-4lld %-22s planned %s\n", e.device.c_str(), static_cast<long long>(e.clients),
                how.c_str(), e.method.rfind("none", 0) == 0 ? "-" : absl::StrFormat("%.4f s", e.estimated_round_s).c_str());
  }
  if (f.fake_trainers) std::printf("  note: --fake-trainers: FakeTrainer stand-ins, no model is trained\n");
  std::printf("  %d training threads x %d LibTorch threads; setup %.1f s\n", workers, torch_threads,
              context.setup_wall_s);
  std::fflush(stdout);

  const bool tty = !f.quiet && isatty(fileno(stderr));
  std::mutex mu;
  bool line_open = false;
  simulation::SimulatorOptions options;
  options.workers = workers;
  int64_t total_rounds = config.run.rounds;
  options.on_progress = [&](const simulation::Progress& p) {
    if (!tty) return;
    std::lock_guard<std::mutex> lock(mu);
    total_rounds = p.total_rounds;
    std::fprintf(stderr, "\r\033[K  round %lld/%lld  %s  %lld/%lld clients done  wall %s  ETA %s",
                 static_cast<long long>(p.round), static_cast<long long>(p.total_rounds), p.phase.c_str(),
                 static_cast<long long>(p.clients_done), static_cast<long long>(p.clients_selected),
                 Duration(p.wall_s).c_str(), p.eta_s >= 0 ? Duration(p.eta_s).c_str() : "?");
    std::fflush(stderr);
    line_open = true;
  };
  options.on_round = [&](const simulation::RoundRecord& r) {
    if (f.quiet) return;
    std::lock_guard<std::mutex> lock(mu);
    if (line_open) {
      std::fprintf(stderr, "\r\033[K");
      std::fflush(stderr);
      line_open = false;
    }
    std::printf("  %s\n", RoundLine(r, total_rounds).c_str());
    std::fflush(stdout);
  };
  absl::StatusOr<simulation::SimulationResult> result = simulation::RunSimulation(config, **trainers, *data, options);
  if (line_open) std::fprintf(stderr, "\r\033[K");
  if (!result.ok()) return Fail(kCmd, result.status());

  absl::StatusOr<simulation::ReportFiles> files = simulation::WriteReport(out, config, *result, context);
  if (!files.ok()) return Fail(kCmd, files.status());
  // The trained global state as a PEFT adapter (stand-in trainers train nothing).
  const std::filesystem::path adapter_dir = std::filesystem::path(out) / "adapter";
  if (!f.fake_trainers) {
    absl::StatusOr<peft::LoraSpec> spec = peft::LoraSpecFromOptions(config.lora);
    if (!spec.ok()) return Fail(kCmd, spec.status());
    absl::Status saved = peft::SaveStateAsAdapter(adapter_dir, result->final_state, *spec, config.model.path).status();
    if (!saved.ok()) return Fail(kCmd, saved);
  }
  std::printf("\n%s", simulation::SummaryTable(*result).c_str());
  std::printf("\n  %s\n", result->finish_reason.c_str());
  if (!files->plot_warning.empty()) std::printf("  warning: %s\n", files->plot_warning.c_str());
  std::printf("  report   %s\n  results  %s\n  summary  %s\n", files->html.c_str(), files->results.c_str(),
              files->summary.c_str());
  if (!f.fake_trainers) std::printf("  adapter  %s\n", adapter_dir.string().c_str());
  return kExitOk;
}

}  // namespace

void RegisterSimulateCommand(CLI::App& app, Action& action, const GlobalFlags& flags) {
  CLI::App* cmd = app.add_subcommand(
      "simulate",
      "Run a federated simulation of virtual devices in one process (no --config: the built-in demo, "
      "examples/default_sim.toml)");
  auto f = std::make_shared<SimulateFlags>();
  cmd->add_option("--config", f->config, "Run configuration (TOML); default: the built-in scenario")
      ->check(CLI::ExistingFile);
  cmd->add_option("--set", f->set,
                  "Override a config key, KEY=VALUE with VALUE in TOML (rounds.deadline_s=0.5, "
                  "aggregation.zo_mixing=snr, secagg.enabled=false); repeatable")
      ->allow_extra_args(false);
  cmd->add_option("--out", f->out, "Output directory (results.jsonl, summary.json, plots, report.html, the "
                                   "trained adapter in adapter/); default: simulation.out");
  cmd->add_option("--rounds", f->rounds, "Override run.rounds")->check(CLI::Range(1, 100000));
  cmd->add_option("--seed", f->seed, "Override run.seed")->check(CLI::NonNegativeNumber);
  cmd->add_option("--clients", f->clients, "Override simulation.num_clients")->check(CLI::Range(1, 10000000));
  cmd->add_option("--workers", f->workers,
                  "Clients training at once (simulation.threads; 0 = all cores); on CUDA each on a stream of its "
                  "own, spread over the visible GPUs")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--device", f->device, "Override model.device: cpu or cuda (every visible GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_flag("--fake-trainers", f->fake_trainers,
                "FakeTrainer stand-ins instead of the model (scale runs of the coordinator path)");
  cmd->add_flag("-q,--quiet", f->quiet, "No progress, no per-round lines");
  cmd->callback([&action, &flags, f] {
    action = [f, &flags] { return Run(*f, flags); };
  });
}

}  // namespace fedfm::cli
