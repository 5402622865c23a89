#include "cli/command.h"

#include <cstdio>
#include <string>

namespace fedfm::cli {

int Fail(std::string_view command, const absl::Status& status) {
  std::string message(status.message());
  std::fprintf(stderr, "fedfm %.*s: %s\n", static_cast<int>(command.size()), command.data(), message.c_str());
  return kExitRuntimeError;
}

int NotBuilt(std::string_view command, std::string_view what) {
  std::fprintf(stderr, "fedfm %.*s: not built: %.*s\n", static_cast<int>(command.size()), command.data(),
               static_cast<int>(what.size()), what.data());
  return kExitUsage;
}

}  // namespace fedfm::cli
