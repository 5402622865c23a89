#include "cli/flag_parsing.h"

#include <arpa/inet.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace fedfm::cli {
namespace {

// Splits "12.5GiB" into 12.5 and "GiB". False without a leading number.
bool SplitNumber(const std::string& text, double* value, std::string* unit) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) return false;
  const std::string number = text.substr(0, i);
  if (number.find_first_of("0123456789") == std::string::npos || number.find('.') != number.rfind('.')) return false;
  *value = std::strtod(number.c_str(), nullptr);
  size_t j = i;
  while (j < text.size() && text[j] == ' ') ++j;
  *unit = text.substr(j);
  return true;
}

}  // namespace

absl::StatusOr<int64_t> ParseDurationMs(const std::string& text) {
  double value = 0;
  std::string unit;
  if (!SplitNumber(text, &value, &unit)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is not a duration (like 90s, 10m, 24h, 7d)"));
  }
  double scale = 0;
  if (unit.empty() || unit == "s") {
    scale = 1e3;
  } else if (unit == "ms") {
    scale = 1;
  } else if (unit == "m" || unit == "min") {
    scale = 60e3;
  } else if (unit == "h") {
    scale = 3600e3;
  } else if (unit == "d") {
    scale = 86400e3;
  } else if (unit == "w") {
    scale = 7 * 86400e3;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\": unknown duration unit \"", unit, "\" (use ms, s, m, h, d or w)"));
  }
  const double ms = value * scale;
  if (!std::isfinite(ms) || ms > 9.2e18) return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is too long"));
  return static_cast<int64_t>(ms);
}

absl::StatusOr<int64_t> ParseSizeBytes(const std::string& text) {
  double value = 0;
  std::string unit;
  if (!SplitNumber(text, &value, &unit)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is not a size (like 512MiB, 4GiB, 1.5GB)"));
  }
  const std::string u = absl::AsciiStrToLower(unit);
  double scale = 0;
  if (u.empty() || unit == "B" || unit == "b") {
    scale = 1;
  } else if (u == "k" || u == "kib") {
    scale = 1024.0;
  } else if (u == "m" || u == "mib") {
    scale = 1024.0 * 1024;
  } else if (u == "g" || u == "gib") {
    scale = 1024.0 * 1024 * 1024;
  } else if (u == "t" || u == "tib") {
    scale = 1024.0 * 1024 * 1024 * 1024;
  } else if (u == "kb") {
    scale = 1e3;
  } else if (u == "mb") {
    scale = 1e6;
  } else if (u == "gb") {
    scale = 1e9;
  } else if (u == "tb") {
    scale = 1e12;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": unknown size unit \"", unit,
                                                   "\" (use B, KiB, MiB, GiB, TiB or KB, MB, GB, TB)"));
  }
  const double bytes = value * scale;
  if (!std::isfinite(bytes) || bytes > 4.6e18) return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is too large"));
  return static_cast<int64_t>(bytes);
}

std::string FormatBytes(double bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (u < 4 && bytes >= 1024.0) {
    bytes /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", bytes, kUnits[u]);
  return buf;
}

absl::StatusOr<HostPort> ParseHostPort(const std::string& address) {
  HostPort out;
  std::string port;
  if (!address.empty() && address.front() == '[') {
    const size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return absl::InvalidArgumentError(absl::StrCat("\"", address, "\" is not [IPv6]:PORT"));
    }
    out.host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos || address.find(':') != colon) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", address, "\" is not HOST:PORT (write IPv6 addresses as [::1]:PORT)"));
    }
    out.host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port) > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("\"", address, "\": port must be 0..65535"));
  }
  out.port = std::stoi(port);
  return out;
}

bool IsLoopbackHost(const std::string& host) {
  if (absl::AsciiStrToLower(host) == "localhost") return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

}  // namespace fedfm::cli
