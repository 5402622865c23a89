// Subcommands whose capability has not landed yet. Each says so and exits 2;
// the issue that builds the capability replaces its stub with a real file.
#include <CLI/CLI.hpp>

#include <string>

#include "cli/command.h"

namespace fedfm::cli {
namespace {

void AddStub(CLI::App& parent, Action& action, const std::string& name, const std::string& description,
             const std::string& missing) {
  CLI::App* sub = parent.add_subcommand(name, description + " [not built yet]");
  sub->prefix_command();
  std::string path = parent.get_parent() ? parent.get_name() + " " + name : name;
  sub->callback([&action, path, missing] {
    action = [path, missing] { return NotBuilt(path, missing); };
  });
}

}  // namespace

void RegisterCoordinatorCommands(CLI::App& app, Action& action, const GlobalFlags&) {
  AddStub(app, action, "coordinator", "Run the coordinator service (gRPC, SQLite state, dashboard)", "the coordinator");
  AddStub(app, action, "enroll", "Issue an enrollment token for a client device", "the coordinator");
  AddStub(app, action, "clients", "List or revoke enrolled clients", "the coordinator");
}
void RegisterClientCommand(CLI::App& app, Action& action, const GlobalFlags&) {
  AddStub(app, action, "client", "Run a client device that trains on local data", "the device client");
}
void RegisterCoordinatorBench(CLI::App& bench, Action& action, const GlobalFlags&) {
  AddStub(bench, action, "coordinator", "Round time and ingest rate with many lightweight clients", "the coordinator");
}

}  // namespace fedfm::cli
