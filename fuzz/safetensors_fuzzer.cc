// Any byte string must parse into a valid Safetensors or fail with a Status.
#include <cstddef>
#include <cstdint>

#include "protocols/check.h"
#include "protocols/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  auto parsed = fedfm::protocols::ParseSafetensors(bytes);
  if (parsed.ok()) {
    for (const auto& [name, tensor] : parsed->tensors) {
      FEDFM_CHECK(tensor.bytes().data() >= bytes.data() || tensor.nbytes() == 0 ||
                  tensor.bytes().size() == tensor.nbytes());
      volatile float sink = 0;
      for (float v : tensor.ToFloat32()) sink = sink + v;
    }
  }
  return 0;
}
