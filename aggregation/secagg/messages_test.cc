#include "aggregation/secagg/messages.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace fedfm::secagg {
namespace {

Key RandomKey(std::mt19937& gen) {
  Key k;
  for (uint8_t& b : k) b = static_cast<uint8_t>(gen());
  return k;
}

Bytes RandomBytes(std::mt19937& gen, size_t n) {
  Bytes b(n);
  for (uint8_t& x : b) x = static_cast<uint8_t>(gen());
  return b;
}

ShareValue RandomShareValue(std::mt19937& gen) {
  ShareValue v;
  for (uint64_t& x : v) x = ((uint64_t{gen()} << 32) | gen()) % kShamirPrime;
  return v;
}

// Serialize -> parse is the identity, and SerializedSize is exact; every
// strict prefix and any trailing byte is refused.
template <typename M, typename ParseFn>
M RoundTrip(const M& m, ParseFn parse) {
  Bytes wire = Serialize(m);
  EXPECT_EQ(wire.size(), SerializedSize(m));
  for (size_t cut : {size_t{0}, size_t{1}, kHeaderBytes - 1, kHeaderBytes, wire.size() - 1}) {
    if (cut >= wire.size()) continue;
    EXPECT_EQ(parse(ByteSpan(wire.data(), cut)).status().code(),
              absl::StatusCode::kInvalidArgument)
        << "prefix of " << cut << " bytes";
  }
  Bytes longer = wire;
  longer.push_back(0);
  EXPECT_EQ(parse(longer).status().code(), absl::StatusCode::kInvalidArgument);
  Bytes other_version = wire;
  other_version[1] = 2;
  EXPECT_EQ(parse(other_version).status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<M> back = parse(wire);
  EXPECT_TRUE(back.ok()) << back.status();
  return back.ok() ? *back : M();
}

TEST(SecAggMessagesTest, EveryMessageRoundTrips) {
  std::mt19937 gen(21);
  ClientKeys keys{0x0102030405060708ull, 7, RandomKey(gen), RandomKey(gen)};
  ClientKeys keys2 = RoundTrip(keys, ParseClientKeys);
  EXPECT_EQ(keys2.round_id, keys.round_id);
  EXPECT_EQ(keys2.index, keys.index);
  EXPECT_EQ(keys2.cipher_public_key, keys.cipher_public_key);
  EXPECT_EQ(keys2.mask_public_key, keys.mask_public_key);

  NeighborKeys nk{9, 3, {}};
  for (uint32_t v : {1u, 4u, 8u}) nk.neighbors.push_back({v, RandomKey(gen), RandomKey(gen)});
  NeighborKeys nk2 = RoundTrip(nk, ParseNeighborKeys);
  ASSERT_EQ(nk2.neighbors.size(), 3u);
  EXPECT_EQ(nk2.neighbors[2].index, 8u);
  EXPECT_EQ(nk2.neighbors[1].mask_public_key, nk.neighbors[1].mask_public_key);

  ClientShares cs{9, 3, {}};
  for (uint32_t v : {1u, 4u}) cs.shares.push_back({v, RandomBytes(gen, kShareCiphertextBytes)});
  ClientShares cs2 = RoundTrip(cs, ParseClientShares);
  ASSERT_EQ(cs2.shares.size(), 2u);
  EXPECT_EQ(cs2.shares[1].peer, 4u);
  EXPECT_EQ(cs2.shares[1].ciphertext, cs.shares[1].ciphertext);

  RoutedShares rs{9, 4, cs.shares};
  EXPECT_EQ(RoundTrip(rs, ParseRoutedShares).shares[0].ciphertext, cs.shares[0].ciphertext);

  MaskedInput mi{9, 5, std::vector<uint32_t>(1000)};
  for (uint32_t& w : mi.masked) w = gen();
  EXPECT_EQ(RoundTrip(mi, ParseMaskedInput).masked, mi.masked);
  EXPECT_EQ(SerializedSize(mi), kHeaderBytes + 8 + 4000);

  UnmaskRequest ur{9, 5, {1, 2, 6}, {3}};
  UnmaskRequest ur2 = RoundTrip(ur, ParseUnmaskRequest);
  EXPECT_EQ(ur2.survived, ur.survived);
  EXPECT_EQ(ur2.dropped, ur.dropped);

  UnmaskResponse resp{9, 5, {}, {}};
  resp.self_mask_shares.push_back({1, RandomShareValue(gen)});
  resp.self_mask_shares.push_back({2, RandomShareValue(gen)});
  resp.mask_key_shares.push_back({3, RandomShareValue(gen)});
  UnmaskResponse resp2 = RoundTrip(resp, ParseUnmaskResponse);
  ASSERT_EQ(resp2.self_mask_shares.size(), 2u);
  ASSERT_EQ(resp2.mask_key_shares.size(), 1u);
  EXPECT_EQ(resp2.self_mask_shares[1].value, resp.self_mask_shares[1].value);
  EXPECT_EQ(resp2.mask_key_shares[0].owner, 3u);
}

TEST(SecAggMessagesTest, RefusesWrongTypeHugeCountsAndOutOfFieldShares) {
  ClientKeys keys{1, 2, {}, {}};
  Bytes wire = Serialize(keys);
  EXPECT_EQ(*PeekMessageType(wire), MessageType::kClientKeys);
  EXPECT_EQ(ParseNeighborKeys(wire).status().code(), absl::StatusCode::kInvalidArgument);
  wire[0] = 99;
  EXPECT_FALSE(PeekMessageType(wire).ok());

  // A count claiming far more items than bytes present must not allocate them.
  MaskedInput mi{1, 2, {1, 2, 3}};
  Bytes m = Serialize(mi);
  for (int b = 0; b < 8; ++b) m[kHeaderBytes + b] = 0xff;
  EXPECT_EQ(ParseMaskedInput(m).status().code(), absl::StatusCode::kInvalidArgument);

  UnmaskResponse resp{1, 2, {{3, ShareValue{1, 2, 3, 4, 5}}}, {}};
  Bytes r = Serialize(resp);
  for (int b = 0; b < 8; ++b) r[kHeaderBytes + 4 + 4 + b] = 0xff;  // first element = 2^64 - 1
  EXPECT_EQ(ParseUnmaskResponse(r).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fedfm::secagg
