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


}  // namespace fedfm::cli
