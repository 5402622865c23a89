// Any text must parse into a RunConfig that round-trips, or fail with a Status.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "protocols/check.h"
#include "protocols/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = fedfm::protocols::ParseRunConfig(text, "fuzz.toml");
  if (config.ok()) {
    auto again = fedfm::protocols::ParseRunConfig(fedfm::protocols::RunConfigToToml(*config), "again.toml");
    FEDFM_CHECK_MSG(again.ok(), "a parsed config must round-trip through its TOML");
  }
  return 0;
}
