#include "protocols/check.h"

#include <cstdio>
#include <cstdlib>

namespace fedfm::internal {

void CheckFailed(const char* file, int line, const char* condition, const char* message) {
  std::fprintf(stderr, "fedfm: check failed at %s:%d: %s%s%s\n", file, line, condition,
               message ? ": " : "", message ? message : "");
  std::fflush(stderr);
  std::abort();
}

}  // namespace fedfm::internal
