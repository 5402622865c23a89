// Any byte string given to any SecAgg+ message parser must parse or fail
// with a Status (never crash or read out of bounds); a parsed message must
// serialize to SerializedSize(m) bytes that parse again to the same bytes.
#include <cstddef>
#include <cstdint>

#include "aggregation/secagg/messages.h"
#include "protocols/check.h"

namespace {

using namespace fedfm::secagg;

template <typename Parse>
void Check(Parse parse, ByteSpan bytes) {
  auto parsed = parse(bytes);
  if (!parsed.ok()) {
    FEDFM_CHECK(!parsed.status().message().empty());
    return;
  }
  const Bytes once = Serialize(*parsed);
  FEDFM_CHECK(once.size() == SerializedSize(*parsed));
  auto again = parse(ByteSpan(once.data(), once.size()));
  FEDFM_CHECK_MSG(again.ok(), "a serialized message must parse");
  const Bytes twice = Serialize(*again);
  FEDFM_CHECK(twice == once);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteSpan bytes(data, size);
  (void)PeekMessageType(bytes);
  Check(ParseClientKeys, bytes);
  Check(ParseNeighborKeys, bytes);
  Check(ParseClientShares, bytes);
  Check(ParseRoutedShares, bytes);
  Check(ParseMaskedInput, bytes);
  Check(ParseUnmaskRequest, bytes);
  Check(ParseUnmaskResponse, bytes);
  return 0;
}
