// Parsing of the human-friendly flag values the fedfm subcommands take:
// durations ("90s", "10m", "24h", "7d"), sizes ("512MiB", "4GiB", "1.5GB")
// and network addresses ("host:port", "[::1]:7443").
#ifndef FEDFM_CLI_FLAG_PARSING_H_
#define FEDFM_CLI_FLAG_PARSING_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace fedfm::cli {

// A duration: a non-negative decimal number followed by a unit, "ms", "s",
// "m", "h", "d" or "w" ("1.5h" = 90 minutes); a bare number is seconds.
// Milliseconds. InvalidArgument naming the value otherwise.
absl::StatusOr<int64_t> ParseDurationMs(const std::string& text);

// A size: a non-negative decimal number followed by a unit: "B", binary
// "KiB" "MiB" "GiB" "TiB" (also "K" "M" "G" "T"), or decimal "KB" "MB" "GB"
// "TB"; a bare number is bytes. Units are case-insensitive except that "b"
// alone means bytes. Bytes, rounded down. InvalidArgument naming the value
// otherwise (negative, no digits, an unknown unit, above 2^62).
absl::StatusOr<int64_t> ParseSizeBytes(const std::string& text);

// "1.5 GiB", "512 MiB", "800 B": the largest binary unit with a value >= 1.
std::string FormatBytes(double bytes);

struct HostPort {
  std::string host;  // without brackets: "::1", "127.0.0.1", "coordinator.lan"
  int port = 0;
};

// "host:port" or "[ipv6]:port", port 0..65535. InvalidArgument otherwise.
absl::StatusOr<HostPort> ParseHostPort(const std::string& address);

// True for addresses only this machine can reach: "localhost", 127.0.0.0/8,
// ::1. Wildcards ("0.0.0.0", "::", "") are not loopback.
bool IsLoopbackHost(const std::string& host);

}  // namespace fedfm::cli

#endif  // FEDFM_CLI_FLAG_PARSING_H_
