// Any byte string, whole or in chunks, must decode or fail with a Status; a
// decoded map must re-encode to the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "protocols/check.h"
#include "protocols/tensor_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fedfm::protocols;
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  DecodeLimits limits{.max_total_bytes = 1 << 20};
  auto whole = DecodeTensorMap(bytes, limits);
  StreamDecoder stream(limits);
  absl::Status status;
  for (auto chunk : SplitChunks(bytes, 7)) {
    status = stream.Append(chunk);
    if (!status.ok()) break;
  }
  auto chunked = status.ok() ? stream.Finish() : absl::StatusOr<TensorMap>(status);
  FEDFM_CHECK_MSG(whole.ok() == chunked.ok(), "chunked and whole decoding must agree");
  if (whole.ok()) {
    std::vector<std::byte> again = EncodeTensorMap(*whole);
    FEDFM_CHECK(again.size() == size && std::memcmp(again.data(), data, size) == 0);
  }
  return 0;
}
