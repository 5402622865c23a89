// fedfm: one binary, one subcommand per job. Thin: parse flags, run the
// chosen subcommand's action, map the outcome to an exit code.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "cli/command.h"
#include "cli/version.h"
#include "model/runtime.h"

int main(int argc, char** argv) {
  using namespace fedfm::cli;
  // Distro Abseil builds may keep absl::Mutex deadlock detection on (a
  // debug aid): it tracks every lock gRPC takes, a few percent of the
  // coordinator's CPU under load.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Logs go to stderr: stdout carries what commands print (JSON, tokens, tables).
  spdlog::set_default_logger(spdlog::stderr_color_mt("fedfm"));
  CLI::App app{"fedfm: federated fine-tuning of foundation models with secure aggregation"};
  app.set_version_flag("--version", std::string(kVersionString));
  app.require_subcommand(1);
  GlobalFlags flags;
  app.add_option("--threads", flags.threads, "LibTorch intra-op threads (0 = all cores)")
      ->check(CLI::Range(0, 1024));
  app.add_flag("-v,--verbose", flags.verbose, "Debug logging");

  Action action;
  RegisterCoordinatorCommands(app, action, flags);
  RegisterClientCommand(app, action, flags);
  RegisterSimulateCommand(app, action, flags);
  RegisterTrainCommand(app, action, flags);
  RegisterModelCommand(app, action, flags);
  RegisterAdapterCommand(app, action, flags);
  RegisterBenchCommand(app, action, flags);
  RegisterConfigCommand(app, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::vector<std::string> extras = app.remaining();
    if (!extras.empty() && app.get_subcommands().empty()) {
      std::fprintf(stderr, "fedfm: unknown subcommand \"%s\"\nRun 'fedfm --help' for usage.\n", extras.front().c_str());
      return kExitUsage;
    }
    std::fprintf(stderr, "fedfm: %s\nRun 'fedfm --help' for usage.\n", e.what());
    return kExitUsage;
  }
  if (!action) {
    std::fprintf(stderr, "fedfm: nothing to do (see --help)\n");
    return kExitUsage;
  }
  if (flags.verbose) spdlog::set_level(spdlog::level::debug);
  fedfm::model::SetTorchThreads(flags.threads);
  fedfm::model::RetainFreedHostMemory();
  try {
    return action();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fedfm: %s\n", e.what());
    return kExitRuntimeError;
  }
}
