// What a simulation leaves in its output directory:
//   results.jsonl   one JSON object per round attempt (round 0: the initial
//                   state): losses, participants / drop-outs / stragglers,
//                   bytes and client steps by method, virtual time; machine-
//                   dependent values (wall times, measured memory) under
//                   "measured", everything else identical for a given seed
//   summary.json    the run in one object: fleet and the method each device
//                   gets, loss before / after, totals by method, virtual
//                   time, memory accounting, throughput and overhead
//   loss_vs_round.png, loss_vs_virtual_time.png, bytes_per_round.png
//                   drawn by gnuplot (pngcairo, else png) from *.dat files
//                   and plots.gp, which stay beside them
//   report.html     self-contained: the plots as data URIs, the summary and
//                   round tables, the config
// (`fedfm simulate` adds adapter/, the final global state as a PEFT adapter.)
// Torch-free.
#ifndef FEDFM_SIMULATION_REPORT_H_
#define FEDFM_SIMULATION_REPORT_H_

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "protocols/config/options.h"
#include "simulation/simulation.h"

namespace fedfm::simulation {

// Context of a run for the summary and the report.
struct RunContext {
  std::string model;      // TrainerFactory::description()
  std::string data;       // SimData::description
  uint64_t shared_bytes = 0;  // the base model, shared by every client
  int torch_threads = 0;  // LibTorch intra-op threads
  int cores = 0;
  std::string machine;    // e.g. "2-core shared VM, Debian 12, LibTorch 1.13.1 CPU"
  double setup_wall_s = 0;  // loading the model and data
};

// One results.jsonl line (no newline) for `round`.
std::string RoundJson(const RoundRecord& round);
// summary.json's text.
std::string SummaryJson(const protocols::RunConfig& config, const SimulationResult& result, const RunContext& context);

// The fraction of the run's CPU time spent outside Trainer::Train /
// Evaluate (coordinator, SecAgg, scheduling, data copies), in [0, 1]. The
// trainers' CPU time is that of the threads calling them, so this holds
// with one LibTorch thread per training thread (the default split).
double OverheadFraction(const SimulationResult& result);

struct ReportFiles {
  std::filesystem::path results, summary, html;
  std::vector<std::filesystem::path> plots;  // empty when gnuplot is missing
  std::string plot_warning;                  // why there are no plots, if so
};

// Writes everything above into `dir` (created when missing). Plots are
// skipped with a warning, not an error, when gnuplot is not installed.
absl::StatusOr<ReportFiles> WriteReport(const std::filesystem::path& dir, const protocols::RunConfig& config,
                                        const SimulationResult& result, const RunContext& context);

// The short table `fedfm simulate` prints at the end.
std::string SummaryTable(const SimulationResult& result);

}  // namespace fedfm::simulation

#endif  // FEDFM_SIMULATION_REPORT_H_
