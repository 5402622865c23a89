// TOML run configuration -> RunConfig. Unknown keys, wrong types and values
// out of range are errors naming the file, line and key:
//   run.toml:12: peft.lora.rank must be in 1..256, got 0
// All errors of a file are reported together, one per line.
#ifndef FEDFM_PROTOCOLS_CONFIG_CONFIG_H_
#define FEDFM_PROTOCOLS_CONFIG_CONFIG_H_

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "protocols/config/options.h"

namespace fedfm::protocols {

// Parses `text` (named `source_name` in messages). Keys absent from the text
// keep the defaults of `base`.
absl::StatusOr<RunConfig> ParseRunConfig(std::string_view text, std::string_view source_name = "config",
                                         const RunConfig& base = {});
absl::StatusOr<RunConfig> LoadRunConfig(const std::filesystem::path& path, const RunConfig& base = {});

// `base` with command-line overrides "KEY=VALUE" applied in order (`fedfm
// simulate --set`). KEY is a dotted key as the file would nest it
// (rounds.deadline_s); VALUE a TOML value (0.5, true, [2, 4],
// [{profile = "h100", count = 2}]), or a bare word taken as a string
// (aggregation.zo_mixing=snr). Each override is checked like a file's key;
// errors name it.
absl::StatusOr<RunConfig> ApplyOverrides(const RunConfig& base, const std::vector<std::string>& overrides);

// Cross-section checks that no single key can express (e.g. a robust rule
// together with secure aggregation). Returns every violation found.
absl::Status ValidateRunConfig(const RunConfig& config);

// The configuration as TOML, every key written (round-trips through ParseRunConfig).
std::string RunConfigToToml(const RunConfig& config);

const char* MethodName(Method method);  // "auto" | "lora" | "partial" | "zo"

}  // namespace fedfm::protocols

#endif  // FEDFM_PROTOCOLS_CONFIG_CONFIG_H_
