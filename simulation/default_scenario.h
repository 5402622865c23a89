// The default scenario of `fedfm simulate`: examples/default_sim.toml,
// embedded into the binary at build time (cmake/EmbedFiles.cmake), so that
// the command runs without any file beside the binary but the bundled
// assets/ the scenario names.
#ifndef FEDFM_SIMULATION_DEFAULT_SCENARIO_H_
#define FEDFM_SIMULATION_DEFAULT_SCENARIO_H_

#include <string_view>

namespace fedfm::simulation {

// The text of examples/default_sim.toml (valid for the program's lifetime).
std::string_view DefaultScenarioToml();

// The name the default scenario has in messages.
inline constexpr char kDefaultScenarioName[] = "examples/default_sim.toml";

}  // namespace fedfm::simulation

#endif  // FEDFM_SIMULATION_DEFAULT_SCENARIO_H_
