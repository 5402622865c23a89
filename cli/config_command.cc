// fedfm config check FILE | fedfm config show [FILE]
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

#include "cli/command.h"
#include "protocols/config/config.h"

namespace fedfm::cli {

void RegisterConfigCommand(CLI::App& app, Action& action) {
  CLI::App* config = app.add_subcommand("config", "Check a run configuration file or print the full schema");
  config->require_subcommand(1);

  auto* check = config->add_subcommand("check", "Parse and validate a run TOML; prints every error with its line");
  auto check_path = std::make_shared<std::string>();
  check->add_option("file", *check_path, "Run configuration (TOML)")->required();
  check->callback([&action, check_path] {
    action = [check_path] {
      auto config = protocols::LoadRunConfig(*check_path);
      if (!config.ok()) return Fail("config check", config.status());
      std::printf("%s: ok\n", check_path->c_str());
      return kExitOk;
    };
  });

  auto* show = config->add_subcommand("show", "Print a configuration with every key and its value (defaults without FILE)");
  auto show_path = std::make_shared<std::string>();
  show->add_option("file", *show_path, "Run configuration (TOML)");
  show->callback([&action, show_path] {
    action = [show_path] {
      protocols::RunConfig config;
      if (!show_path->empty()) {
        auto loaded = protocols::LoadRunConfig(*show_path);
        if (!loaded.ok()) return Fail("config show", loaded.status());
        config = *loaded;
      }
      std::fputs(protocols::RunConfigToToml(config).c_str(), stdout);
      return kExitOk;
    };
  });
}

}  // namespace fedfm::cli
