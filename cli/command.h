// Plumbing shared by the fedfm subcommands. Each subcommand lives in its own
// file and registers itself on the root CLI11 app; its callback stores the
// work to run in `Action`, which main() runs after parsing succeeds.
#ifndef FEDFM_CLI_COMMAND_H_
#define FEDFM_CLI_COMMAND_H_

#include <functional>
#include <string_view>

#include "absl/status/status.h"

namespace CLI {
class App;
}

namespace fedfm::cli {

// Exit codes of every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntimeError = 1;  // the command ran and failed
inline constexpr int kExitUsage = 2;         // bad flags, or a capability not built

// The work a parsed subcommand does; returns an exit code.
using Action = std::function<int()>;

struct GlobalFlags {
  int threads = 0;  // LibTorch intra-op threads; 0 = all cores
  bool verbose = false;
};

// Prints "fedfm <command>: <message>" on stderr and returns kExitRuntimeError.
int Fail(std::string_view command, const absl::Status& status);
// For subcommands this build leaves out (gRPC commands with FEDFM_GRPC=OFF):
// says so plainly and returns kExitUsage. Never pretends to work.
int NotBuilt(std::string_view command, std::string_view what);

void RegisterConfigCommand(CLI::App& app, Action& action);
void RegisterModelCommand(CLI::App& app, Action& action, const GlobalFlags& flags);
void RegisterTrainCommand(CLI::App& app, Action& action, const GlobalFlags& flags);
void RegisterAdapterCommand(CLI::App& app, Action& action, const GlobalFlags& flags);
void RegisterSimulateCommand(CLI::App& app, Action& action, const GlobalFlags& flags);
void RegisterCoordinatorCommands(CLI::App& app, Action& action, const GlobalFlags& flags);
void RegisterClientCommand(CLI::App& app, Action& action, const GlobalFlags& flags);
void RegisterBenchCommand(CLI::App& app, Action& action, const GlobalFlags& flags);

// `fedfm bench <name>`: each benchmark registers itself on the bench group
// and prints one JSON object on stdout.
void RegisterModelBench(CLI::App& bench, Action& action, const GlobalFlags& flags);
void RegisterTrainBench(CLI::App& bench, Action& action, const GlobalFlags& flags);
void RegisterZerothOrderBench(CLI::App& bench, Action& action, const GlobalFlags& flags);
void RegisterSecAggBench(CLI::App& bench, Action& action, const GlobalFlags& flags);
void RegisterCoordinatorBench(CLI::App& bench, Action& action, const GlobalFlags& flags);

}  // namespace fedfm::cli

#endif  // FEDFM_CLI_COMMAND_H_
