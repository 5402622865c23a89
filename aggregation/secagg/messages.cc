#include "aggregation/secagg/messages.h"

#include <bit>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "protocols/check.h"

namespace fedfm::secagg {
namespace {

const char* TypeName(MessageType type) {
  switch (type) {
    case MessageType::kClientKeys: return "ClientKeys";
    case MessageType::kNeighborKeys: return "NeighborKeys";
    case MessageType::kClientShares: return "ClientShares";
    case MessageType::kRoutedShares: return "RoutedShares";
    case MessageType::kMaskedInput: return "MaskedInput";
    case MessageType::kUnmaskRequest: return "UnmaskRequest";
    case MessageType::kUnmaskResponse: return "UnmaskResponse";
  }
  return "unknown";
}

class Writer {
 public:
  Writer(MessageType type, uint64_t round_id, uint32_t index, size_t size) {
    bytes_.reserve(size);
    U8(static_cast<uint8_t>(type));
    U8(kWireVersion);
    U64(round_id);
    U32(index);
  }
  void U8(uint8_t v) { bytes_.push_back(v); }
  void U32(uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void U64(uint64_t v) {
    for (int i = 0; i < 8; ++i) bytes_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void Raw(const uint8_t* data, size_t n) { bytes_.insert(bytes_.end(), data, data + n); }
  void Words(const std::vector<uint32_t>& words) {
    const size_t at = bytes_.size();
    bytes_.resize(at + words.size() * 4);
    if constexpr (std::endian::native == std::endian::little) {
      if (!words.empty()) std::memcpy(bytes_.data() + at, words.data(), words.size() * 4);
    } else {
      for (size_t i = 0; i < words.size(); ++i) {
        for (int b = 0; b < 4; ++b) bytes_[at + 4 * i + b] = static_cast<uint8_t>(words[i] >> (8 * b));
      }
    }
  }
  Bytes Finish(size_t expected) {
    FEDFM_CHECK(bytes_.size() == expected);
    return std::move(bytes_);
  }

 private:
  Bytes bytes_;
};

class Reader {
 public:
  Reader(ByteSpan bytes, MessageType type) : bytes_(bytes), type_(type) {}

  // Reads and checks the header; fills round_id and index.
  absl::Status Header(uint64_t& round_id, uint32_t& index) {
    if (bytes_.size() < kHeaderBytes) return Error("shorter than the 14-byte header");
    uint8_t type = 0, version = 0;
    U8(type);
    U8(version);
    if (type != static_cast<uint8_t>(type_)) {
      return Error(absl::StrCat("type byte is ", static_cast<int>(type), ", expected ",
                                static_cast<int>(type_)));
    }
    if (version != kWireVersion) {
      return Error(absl::StrCat("wire version ", static_cast<int>(version), " is not supported (expected ",
                                static_cast<int>(kWireVersion), ")"));
    }
    U64(round_id);
    U32(index);
    return absl::OkStatus();
  }
  // A count of items of `item_bytes` each that must fit in what is left.
  absl::Status Count(size_t item_bytes, uint64_t& count, bool wide = false) {
    if (wide) {
      if (!Need(8)) return Error("truncated count");
      U64(count);
    } else {
      if (!Need(4)) return Error("truncated count");
      uint32_t c = 0;
      U32(c);
      count = c;
    }
    if (count > (bytes_.size() - pos_) / item_bytes) {
      return Error(absl::StrCat("count ", count, " needs more than the ", bytes_.size() - pos_,
                                " bytes left"));
    }
    return absl::OkStatus();
  }
  void U8(uint8_t& v) { v = bytes_[pos_++]; }
  void U32(uint32_t& v) {
    v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t{bytes_[pos_++]} << (8 * i);
  }
  void U64(uint64_t& v) {
    v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{bytes_[pos_++]} << (8 * i);
  }
  void Raw(uint8_t* out, size_t n) {
    std::memcpy(out, bytes_.data() + pos_, n);
    pos_ += n;
  }
  const uint8_t* Skip(size_t n) {
    const uint8_t* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }
  bool Need(size_t n) const { return bytes_.size() - pos_ >= n; }
  absl::Status End() const {
    if (pos_ != bytes_.size()) {
      return Error(absl::StrCat(bytes_.size() - pos_, " trailing bytes"));
    }
    return absl::OkStatus();
  }
  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("secagg ", TypeName(type_), " message: ", what));
  }

 private:
  ByteSpan bytes_;
  MessageType type_;
  size_t pos_ = 0;
};

constexpr size_t kPeerKeysBytes = 4 + 2 * kKeyBytes;
constexpr size_t kSealedShareBytes = 4 + kShareCiphertextBytes;
constexpr size_t kRevealedShareBytes = 4 + kShamirShareBytes;

template <typename M>
Bytes SerializeShares(const M& m, MessageType type) {
  const size_t size = SerializedSize(m);
  Writer w(type, m.round_id, m.index, size);
  w.U32(static_cast<uint32_t>(m.shares.size()));
  for (const EncryptedShare& s : m.shares) {
    FEDFM_CHECK_MSG(s.ciphertext.size() == kShareCiphertextBytes,
                    "an encrypted share must be 108 bytes");
    w.U32(s.peer);
    w.Raw(s.ciphertext.data(), s.ciphertext.size());
  }
  return w.Finish(size);
}

template <typename M>
absl::StatusOr<M> ParseShares(ByteSpan bytes, MessageType type) {
  Reader r(bytes, type);
  M m;
  absl::Status s = r.Header(m.round_id, m.index);
  if (!s.ok()) return s;
  uint64_t count = 0;
  s = r.Count(kSealedShareBytes, count);
  if (!s.ok()) return s;
  m.shares.resize(count);
  for (EncryptedShare& share : m.shares) {
    r.U32(share.peer);
    share.ciphertext.resize(kShareCiphertextBytes);
    r.Raw(share.ciphertext.data(), kShareCiphertextBytes);
  }
  s = r.End();
  if (!s.ok()) return s;
  return m;
}

void WriteRevealed(Writer& w, const std::vector<RevealedShare>& shares) {
  w.U32(static_cast<uint32_t>(shares.size()));
  uint8_t buf[kShamirShareBytes];
  for (const RevealedShare& s : shares) {
    w.U32(s.owner);
    EncodeShareValue(s.value, buf);
    w.Raw(buf, sizeof(buf));
  }
}

absl::Status ReadRevealed(Reader& r, std::vector<RevealedShare>& shares) {
  uint64_t count = 0;
  absl::Status s = r.Count(kRevealedShareBytes, count);
  if (!s.ok()) return s;
  shares.resize(count);
  for (RevealedShare& share : shares) {
    r.U32(share.owner);
    absl::StatusOr<ShareValue> value = DecodeShareValue(r.Skip(kShamirShareBytes));
    if (!value.ok()) return r.Error(std::string(value.status().message()));
    share.value = *value;
  }
  return absl::OkStatus();
}

absl::Status ReadIndices(Reader& r, std::vector<uint32_t>& out) {
  uint64_t count = 0;
  absl::Status s = r.Count(4, count);
  if (!s.ok()) return s;
  out.resize(count);
  for (uint32_t& v : out) r.U32(v);
  return absl::OkStatus();
}

}  // namespace

size_t SerializedSize(const ClientKeys&) { return kHeaderBytes + 2 * kKeyBytes; }
size_t SerializedSize(const NeighborKeys& m) {
  return kHeaderBytes + 4 + m.neighbors.size() * kPeerKeysBytes;
}
size_t SerializedSize(const ClientShares& m) {
  return kHeaderBytes + 4 + m.shares.size() * kSealedShareBytes;
}
size_t SerializedSize(const RoutedShares& m) {
  return kHeaderBytes + 4 + m.shares.size() * kSealedShareBytes;
}
size_t SerializedSize(const MaskedInput& m) { return kHeaderBytes + 8 + m.masked.size() * 4; }
size_t SerializedSize(const UnmaskRequest& m) {
  return kHeaderBytes + 8 + (m.survived.size() + m.dropped.size()) * 4;
}
size_t SerializedSize(const UnmaskResponse& m) {
  return kHeaderBytes + 8 +
         (m.self_mask_shares.size() + m.mask_key_shares.size()) * kRevealedShareBytes;
}

Bytes Serialize(const ClientKeys& m) {
  const size_t size = SerializedSize(m);
  Writer w(MessageType::kClientKeys, m.round_id, m.index, size);
  w.Raw(m.cipher_public_key.data(), kKeyBytes);
  w.Raw(m.mask_public_key.data(), kKeyBytes);
  return w.Finish(size);
}

Bytes Serialize(const NeighborKeys& m) {
  const size_t size = SerializedSize(m);
  Writer w(MessageType::kNeighborKeys, m.round_id, m.index, size);
  w.U32(static_cast<uint32_t>(m.neighbors.size()));
  for (const PeerKeys& p : m.neighbors) {
    w.U32(p.index);
    w.Raw(p.cipher_public_key.data(), kKeyBytes);
    w.Raw(p.mask_public_key.data(), kKeyBytes);
  }
  return w.Finish(size);
}

Bytes Serialize(const ClientShares& m) { return SerializeShares(m, MessageType::kClientShares); }
Bytes Serialize(const RoutedShares& m) { return SerializeShares(m, MessageType::kRoutedShares); }

Bytes Serialize(const MaskedInput& m) {
  const size_t size = SerializedSize(m);
  Writer w(MessageType::kMaskedInput, m.round_id, m.index, size);
  w.U64(m.masked.size());
  w.Words(m.masked);
  return w.Finish(size);
}

Bytes Serialize(const UnmaskRequest& m) {
  const size_t size = SerializedSize(m);
  Writer w(MessageType::kUnmaskRequest, m.round_id, m.index, size);
  w.U32(static_cast<uint32_t>(m.survived.size()));
  for (uint32_t v : m.survived) w.U32(v);
  w.U32(static_cast<uint32_t>(m.dropped.size()));
  for (uint32_t v : m.dropped) w.U32(v);
  return w.Finish(size);
}

Bytes Serialize(const UnmaskResponse& m) {
  const size_t size = SerializedSize(m);
  Writer w(MessageType::kUnmaskResponse, m.round_id, m.index, size);
  WriteRevealed(w, m.self_mask_shares);
  WriteRevealed(w, m.mask_key_shares);
  return w.Finish(size);
}

absl::StatusOr<ClientKeys> ParseClientKeys(ByteSpan bytes) {
  Reader r(bytes, MessageType::kClientKeys);
  ClientKeys m;
  absl::Status s = r.Header(m.round_id, m.index);
  if (!s.ok()) return s;
  if (!r.Need(2 * kKeyBytes)) return r.Error("truncated keys");
  r.Raw(m.cipher_public_key.data(), kKeyBytes);
  r.Raw(m.mask_public_key.data(), kKeyBytes);
  s = r.End();
  if (!s.ok()) return s;
  return m;
}

absl::StatusOr<NeighborKeys> ParseNeighborKeys(ByteSpan bytes) {
  Reader r(bytes, MessageType::kNeighborKeys);
  NeighborKeys m;
  absl::Status s = r.Header(m.round_id, m.index);
  if (!s.ok()) return s;
  uint64_t count = 0;
  s = r.Count(kPeerKeysBytes, count);
  if (!s.ok()) return s;
  m.neighbors.resize(count);
  for (PeerKeys& p : m.neighbors) {
    r.U32(p.index);
    r.Raw(p.cipher_public_key.data(), kKeyBytes);
    r.Raw(p.mask_public_key.data(), kKeyBytes);
  }
  s = r.End();
  if (!s.ok()) return s;
  return m;
}

absl::StatusOr<ClientShares> ParseClientShares(ByteSpan bytes) {
  return ParseShares<ClientShares>(bytes, MessageType::kClientShares);
}
absl::StatusOr<RoutedShares> ParseRoutedShares(ByteSpan bytes) {
  return ParseShares<RoutedShares>(bytes, MessageType::kRoutedShares);
}

absl::StatusOr<MaskedInput> ParseMaskedInput(ByteSpan bytes) {
  Reader r(bytes, MessageType::kMaskedInput);
  MaskedInput m;
  absl::Status s = r.Header(m.round_id, m.index);
  if (!s.ok()) return s;
  uint64_t count = 0;
  s = r.Count(4, count, /*wide=*/true);
  if (!s.ok()) return s;
  m.masked.resize(count);
  const uint8_t* p = r.Skip(count * 4);
  if constexpr (std::endian::native == std::endian::little) {
    if (count > 0) std::memcpy(m.masked.data(), p, count * 4);
  } else {
    for (size_t i = 0; i < count; ++i) {
      m.masked[i] = uint32_t{p[4 * i]} | uint32_t{p[4 * i + 1]} << 8 |
                    uint32_t{p[4 * i + 2]} << 16 | uint32_t{p[4 * i + 3]} << 24;
    }
  }
  s = r.End();
  if (!s.ok()) return s;
  return m;
}

absl::StatusOr<UnmaskRequest> ParseUnmaskRequest(ByteSpan bytes) {
  Reader r(bytes, MessageType::kUnmaskRequest);
  UnmaskRequest m;
  absl::Status s = r.Header(m.round_id, m.index);
  if (!s.ok()) return s;
  s = ReadIndices(r, m.survived);
  if (!s.ok()) return s;
  s = ReadIndices(r, m.dropped);
  if (!s.ok()) return s;
  s = r.End();
  if (!s.ok()) return s;
  return m;
}

absl::StatusOr<UnmaskResponse> ParseUnmaskResponse(ByteSpan bytes) {
  Reader r(bytes, MessageType::kUnmaskResponse);
  UnmaskResponse m;
  absl::Status s = r.Header(m.round_id, m.index);
  if (!s.ok()) return s;
  s = ReadRevealed(r, m.self_mask_shares);
  if (!s.ok()) return s;
  s = ReadRevealed(r, m.mask_key_shares);
  if (!s.ok()) return s;
  s = r.End();
  if (!s.ok()) return s;
  return m;
}

absl::StatusOr<MessageType> PeekMessageType(ByteSpan bytes) {
  if (bytes.empty()) return absl::InvalidArgumentError("secagg message: empty");
  const uint8_t t = bytes[0];
  if (t < 1 || t > 7) {
    return absl::InvalidArgumentError(absl::StrCat("secagg message: unknown type byte ", static_cast<int>(t)));
  }
  return static_cast<MessageType>(t);
}

}  // namespace fedfm::secagg
