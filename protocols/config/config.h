// TOML run configuration -> RunConfig. Unknown keys, wrong types and values
// out of range are errors naming the file, line and key:
//   run.toml:12: peft.lora.rank must be in 1..256, got 0
// All errors of a file are reported together, one per line.
#ifndef FEDFM_PROTOCOLS_CONFIG_CONFIG_H_
#define FEDFM_PROTOCOLS_CONFIG_CONFIG_H_

#include <filesystem>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "protocols/config/options.h"

namespace fedfm::protocols {

// Parses `text` (named `source_name` in messages). Keys absent from the text
// keep the defaults of `base`.
absl::StatusOr<RunConfig> ParseRunConfig(std::string_view text, std::string_view source_name = "config",
                                         const RunConfig& base = {});
absl::StatusOr<RunConfig> LoadRunConfig(const std::filesystem::path& path, const RunConfig& base = {});

// Cross-section checks that no single key can express (e.g. a robust rule
// together with secure aggregation). Returns every violation found.
absl::Status ValidateRunConfig(const RunConfig& config);

// The configuration as TOML, every key written (round-trips through ParseRunConfig).
std::string RunConfigToToml(const RunConfig& config);

const char* MethodName(Method method);  // "auto" | "lora" | "partial" | "zo"

}  // namespace fedfm::protocols

#endif  // FEDFM_PROTOCOLS_CONFIG_CONFIG_H_
