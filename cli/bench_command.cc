// fedfm bench <benchmark>: every benchmark prints one JSON object on stdout.
#include <CLI/CLI.hpp>

#include "cli/command.h"

namespace fedfm::cli {

void RegisterBenchCommand(CLI::App& app, Action& action, const GlobalFlags& flags) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks; each prints one JSON object");
  bench->require_subcommand(1);
  RegisterModelBench(*bench, action, flags);
  RegisterTrainBench(*bench, action, flags);
  RegisterZerothOrderBench(*bench, action, flags);
  RegisterSecAggBench(*bench, action, flags);
  RegisterCoordinatorBench(*bench, action, flags);
}

}  // namespace fedfm::cli
