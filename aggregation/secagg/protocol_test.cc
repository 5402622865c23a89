// End-to-end tests of the SecAgg+ client and server state machines: the
// secure sum must equal the plain sum of the encoded inputs exactly, with
// dropouts at every round, and every tampered, replayed, duplicated or
// over-asking message must be refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "aggregation/secagg/client.h"
#include "aggregation/secagg/fixed_point.h"
#include "aggregation/secagg/in_process.h"
#include "aggregation/secagg/messages.h"
#include "aggregation/secagg/round_config.h"
#include "aggregation/secagg/server.h"

namespace fedfm::secagg {
namespace {

constexpr int64_t kParams = 1000;

Key Seed(uint8_t tag) {
  Key k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(13 * i + tag);
  return k;
}

RoundConfig Config(int n, int k, double threshold, uint64_t round_id = 42, uint8_t seed = 1,
                   int64_t params_per_client = kParams) {
  SecAggParams params;
  params.round_id = round_id;
  params.num_clients = n;
  params.num_neighbors = k;
  params.threshold = threshold;
  params.vector_length = params_per_client;
  params.graph_seed = Seed(seed);
  absl::StatusOr<RoundConfig> config = MakeRoundConfig(params);
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

// Random float updates in [-1.2, 1.2] (some clipped), fixed-point encoded.
std::vector<std::vector<uint32_t>> EncodedInputs(int n, uint32_t seed, int64_t p = kParams) {
  absl::StatusOr<FixedPointCodec> codec = FixedPointCodec::Create(1.0, 16, n);
  EXPECT_TRUE(codec.ok());
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.2f, 1.2f);
  std::vector<std::vector<uint32_t>> inputs(n, std::vector<uint32_t>(p));
  std::vector<float> values(p);
  for (auto& input : inputs) {
    for (float& v : values) v = dist(gen);
    EXPECT_TRUE(codec->Encode(values, input).ok());
  }
  return inputs;
}

std::vector<uint32_t> PlainSum(const std::vector<std::vector<uint32_t>>& inputs,
                               const std::vector<uint32_t>& included) {
  std::vector<uint32_t> sum(inputs[0].size(), 0);
  for (uint32_t u : included) {
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += inputs[u][i];
  }
  return sum;
}

absl::StatusOr<InProcessReport> RunRound(const RoundConfig& config,
                                    const std::vector<std::vector<uint32_t>>& inputs,
                                    const std::vector<DropPoint>& drops, int threads = 1) {
  InProcessOptions options;
  options.client_seed = Seed(99);
  options.server_threads = threads;
  options.client_threads = threads;
  InputFn input = [&](uint32_t u, std::span<uint32_t> out) {
    std::copy(inputs[u].begin(), inputs[u].end(), out.begin());
    return absl::OkStatus();
  };
  return RunSecAggInProcess(config, input, drops, options);
}

TEST(SecAggProtocolTest, SecureSumEqualsPlainSumWithoutDropouts) {
  const int n = 12;
  RoundConfig config = Config(n, /*k=*/6, 0.5);
  auto inputs = EncodedInputs(n, 1);
  absl::StatusOr<InProcessReport> report = RunRound(config, inputs, std::vector<DropPoint>(n));
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->result.included.size(), static_cast<size_t>(n));
  EXPECT_TRUE(report->result.dropped_masked.empty());
  EXPECT_EQ(report->result.num_masks_removed, n);  // self masks only
  EXPECT_EQ(report->result.sum, PlainSum(inputs, report->result.included));

  // And it decodes to the float sum of the (clipped, rounded) inputs.
  absl::StatusOr<FixedPointCodec> codec = FixedPointCodec::Create(1.0, 16, n);
  ASSERT_TRUE(codec.ok());
  double direct = 0;
  for (const auto& in : inputs) direct += codec->DecodeOne(in[17]);
  EXPECT_DOUBLE_EQ(codec->DecodeOne(report->result.sum[17]), direct);
}

TEST(SecAggProtocolTest, MaskedInputsLookRandom) {
  // What the server sees of one client is not its input: compare a masked
  // input with the encoded one word by word.
  const int n = 8;
  RoundConfig config = Config(n, 4, 0.5);
  auto inputs = EncodedInputs(n, 2);
  auto server = *SecAggServer::Create(config);
  std::vector<std::unique_ptr<RandomSource>> rngs;
  std::vector<std::unique_ptr<SecAggClient>> clients;
  for (int u = 0; u < n; ++u) {
    rngs.push_back(NewSeededRandom(Seed(50 + u)));
    clients.push_back(*SecAggClient::Create(config, u, rngs.back().get()));
    ASSERT_TRUE(server->AcceptKeys(*clients[u]->AdvertiseKeys()).ok());
  }
  absl::StatusOr<std::vector<NeighborKeys>> keys = server->CloseAdvertise();
  ASSERT_TRUE(keys.ok()) << keys.status();
  for (const NeighborKeys& m : *keys) {
    absl::StatusOr<ClientShares> shares = clients[m.index]->ShareKeys(m);
    ASSERT_TRUE(shares.ok()) << shares.status();
    ASSERT_TRUE(server->AcceptShares(*shares).ok());
  }
  std::vector<RoutedShares> routed = *server->CloseShareKeys();
  absl::StatusOr<MaskedInput> y = clients[0]->MaskInput(routed[0], inputs[0]);
  ASSERT_TRUE(y.ok()) << y.status();
  int equal = 0;
  for (int64_t i = 0; i < kParams; ++i) equal += y->masked[i] == inputs[0][i] ? 1 : 0;
  EXPECT_LT(equal, 3);
}

}  // namespace

void PrintTo(DropPoint point, std::ostream* os) { *os << DropPointName(point); }

namespace {

class SecAggDropoutTest : public ::testing::TestWithParam<DropPoint> {};

TEST_P(SecAggDropoutTest, SumIsExactAfterDropouts) {
  const int n = 16;
  RoundConfig config = Config(n, /*k=*/8, 0.5);  // t = 4
  auto inputs = EncodedInputs(n, 3);
  std::vector<DropPoint> drops(n, DropPoint::kNever);
  for (uint32_t u : {2u, 7u, 11u}) drops[u] = GetParam();
  absl::StatusOr<InProcessReport> report = RunRound(config, inputs, drops);
  ASSERT_TRUE(report.ok()) << report.status();

  std::vector<uint32_t> expected_included;
  for (int u = 0; u < n; ++u) {
    const bool sent_input = drops[u] == DropPoint::kNever || drops[u] == DropPoint::kAfterMaskedInput;
    if (sent_input) expected_included.push_back(u);
  }
  EXPECT_EQ(report->result.included, expected_included);
  EXPECT_EQ(report->result.sum, PlainSum(inputs, report->result.included));
  if (GetParam() == DropPoint::kAfterShareKeys) {
    EXPECT_EQ(report->result.dropped_masked, std::vector<uint32_t>({2, 7, 11}));
    EXPECT_GT(report->result.num_masks_removed, static_cast<int>(expected_included.size()));
  } else {
    EXPECT_TRUE(report->result.dropped_masked.empty());
  }
}

INSTANTIATE_TEST_SUITE_P(AtEveryRound, SecAggDropoutTest,
                         ::testing::Values(DropPoint::kBeforeAdvertise, DropPoint::kAfterAdvertise,
                                           DropPoint::kAfterShareKeys,
                                           DropPoint::kAfterMaskedInput),
                         [](const ::testing::TestParamInfo<DropPoint>& info) {
                           std::string name = DropPointName(info.param);
                           name.erase(std::remove(name.begin(), name.end(), '_'), name.end());
                           return name;
                         });

TEST(SecAggProtocolTest, DropoutsAtAllRoundsTogether) {
  const int n = 20;
  RoundConfig config = Config(n, /*k=*/10, 0.5);  // t = 5
  auto inputs = EncodedInputs(n, 4);
  std::vector<DropPoint> drops(n, DropPoint::kNever);
  drops[0] = DropPoint::kBeforeAdvertise;
  drops[5] = DropPoint::kAfterAdvertise;
  drops[9] = DropPoint::kAfterShareKeys;
  drops[13] = DropPoint::kAfterShareKeys;
  drops[17] = DropPoint::kAfterMaskedInput;
  drops[19] = DropPoint::kAfterMaskedInput;
  absl::StatusOr<InProcessReport> report = RunRound(config, inputs, drops);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->result.included.size(), 16u);
  EXPECT_EQ(report->result.sum, PlainSum(inputs, report->result.included));
  EXPECT_EQ(report->phases[kUnmaskRound].clients, 14);
}

TEST(SecAggProtocolTest, ThreadedMaskingGivesTheSameSum) {
  // Long enough (3+ chunks of 16384 words) for the threads to split the work.
  const int n = 6;
  const int64_t p = 50001;
  RoundConfig config = Config(n, 4, 0.5, 42, 1, p);
  auto inputs = EncodedInputs(n, 10, p);
  std::vector<DropPoint> drops(n);
  drops[4] = DropPoint::kAfterShareKeys;
  auto single = RunRound(config, inputs, drops, 1);
  auto threaded = RunRound(config, inputs, drops, 3);
  ASSERT_TRUE(single.ok()) << single.status();
  ASSERT_TRUE(threaded.ok()) << threaded.status();
  EXPECT_EQ(threaded->result.sum, single->result.sum);
  EXPECT_EQ(threaded->result.sum, PlainSum(inputs, threaded->result.included));
}

TEST(SecAggProtocolTest, ReproducibleFromClientSeed) {
  const int n = 8;
  RoundConfig config = Config(n, 4, 0.5);
  auto inputs = EncodedInputs(n, 5);
  std::vector<DropPoint> drops(n);
  drops[3] = DropPoint::kAfterShareKeys;
  auto a = RunRound(config, inputs, drops);
  auto b = RunRound(config, inputs, drops);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->result.sum, b->result.sum);
  EXPECT_EQ(a->bytes_up, b->bytes_up);
}

TEST(SecAggProtocolTest, ClientsLeftBelowThresholdAreExcludedEarly) {
  // k = 4, t = 4: a client one of whose neighbours never advertises cannot
  // reach t; the server excludes it (and, iteratively, whoever that leaves
  // short) before anything is masked, instead of failing the round later.
  const int n = 12;
  RoundConfig config = Config(n, 4, 1.0);
  auto inputs = EncodedInputs(n, 6);
  std::vector<DropPoint> drops(n);
  drops[0] = DropPoint::kBeforeAdvertise;
  absl::StatusOr<InProcessReport> report = RunRound(config, inputs, drops);
  // With t = k every neighbour matters: the exclusion cascades through the
  // connected graph and the round cannot run.
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(report.status().message().find("round aborted after advertise keys"), std::string::npos)
      << report.status();

  // With t = 3 of 4 the same dropout only costs client 0.
  RoundConfig lenient = Config(n, 4, 0.75);
  report = RunRound(lenient, inputs, drops);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->result.included.size(), static_cast<size_t>(n - 1));
  EXPECT_EQ(report->result.sum, PlainSum(inputs, report->result.included));
}

TEST(SecAggProtocolTest, AbortsWhenADroppedClientKeepsFewerThanTSurvivingNeighbours) {
  const int n = 12;
  RoundConfig config = Config(n, 4, 0.75);  // t = 3
  auto inputs = EncodedInputs(n, 7);
  std::vector<DropPoint> drops(n);
  // Client 0 and two of its neighbours drop after sharing keys: client 0's
  // pairwise masks sit in the inputs of its 2 surviving neighbours, but only
  // 2 < t = 3 of them can hand in shares of its mask key.
  std::span<const uint32_t> nbrs = config.graph->Neighbors(0);
  drops[0] = DropPoint::kAfterShareKeys;
  drops[nbrs[0]] = DropPoint::kAfterShareKeys;
  drops[nbrs[1]] = DropPoint::kAfterShareKeys;
  absl::StatusOr<InProcessReport> report = RunRound(config, inputs, drops);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string msg(report.status().message());
  EXPECT_NE(msg.find("round aborted after masked input"), std::string::npos) << msg;
  EXPECT_NE(msg.find("threshold t = 3"), std::string::npos) << msg;
}

TEST(SecAggProtocolTest, AbortsWhenTooFewSurvivorsAnswerTheUnmaskRequest) {
  const int n = 12;
  RoundConfig config = Config(n, 4, 0.75);  // t = 3
  auto inputs = EncodedInputs(n, 8);
  std::vector<DropPoint> drops(n);
  // Two of client 5's four neighbours vanish during unmasking: only 2 < 3
  // shares of client 5's self-mask seed can arrive.
  std::span<const uint32_t> nbrs = config.graph->Neighbors(5);
  drops[nbrs[0]] = DropPoint::kAfterMaskedInput;
  drops[nbrs[2]] = DropPoint::kAfterMaskedInput;
  absl::StatusOr<InProcessReport> report = RunRound(config, inputs, drops);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string msg(report.status().message());
  EXPECT_NE(msg.find("round aborted in unmasking"), std::string::npos) << msg;
  EXPECT_NE(msg.find("needs t = 3"), std::string::npos) << msg;
}

// A hand-driven round, for tests that tamper with messages between the rounds.
class SecAggManualRound : public ::testing::Test {
 protected:
  void Start(uint64_t round_id = 42, int n = 8, int k = 4) {
    n_ = n;
    config_ = Config(n, k, 0.5, round_id);
    inputs_ = EncodedInputs(n, 9);
    server_ = *SecAggServer::Create(config_);
    rngs_.clear();
    clients_.clear();
    keys_.clear();
    neighbor_keys_.clear();
    client_shares_.clear();
    routed_.clear();
    masked_.clear();
    requests_.clear();
    for (int u = 0; u < n; ++u) {
      rngs_.push_back(NewSeededRandom(Seed(static_cast<uint8_t>(100 + u + round_id))));
      clients_.push_back(*SecAggClient::Create(config_, u, rngs_.back().get()));
    }
  }
  void Advertise() {
    for (int u = 0; u < n_; ++u) {
      absl::StatusOr<ClientKeys> m = clients_[u]->AdvertiseKeys();
      ASSERT_TRUE(m.ok()) << m.status();
      keys_.push_back(*m);
      ASSERT_TRUE(server_->AcceptKeys(*m).ok());
    }
    neighbor_keys_ = *server_->CloseAdvertise();
  }
  void ShareKeys() {
    for (const NeighborKeys& m : neighbor_keys_) {
      absl::StatusOr<ClientShares> s = clients_[m.index]->ShareKeys(m);
      ASSERT_TRUE(s.ok()) << s.status();
      client_shares_.push_back(*s);
      ASSERT_TRUE(server_->AcceptShares(*s).ok());
    }
    routed_ = *server_->CloseShareKeys();
  }
  void MaskAll() {
    for (const RoutedShares& m : routed_) {
      absl::StatusOr<MaskedInput> y = clients_[m.index]->MaskInput(m, inputs_[m.index]);
      ASSERT_TRUE(y.ok()) << y.status();
      masked_.push_back(*y);
      ASSERT_TRUE(server_->AcceptMaskedInput(*y).ok());
    }
    requests_ = *server_->CloseMaskedInput();
  }

  int n_ = 0;
  RoundConfig config_;
  std::vector<std::vector<uint32_t>> inputs_;
  std::unique_ptr<SecAggServer> server_;
  std::vector<std::unique_ptr<RandomSource>> rngs_;
  std::vector<std::unique_ptr<SecAggClient>> clients_;
  std::vector<ClientKeys> keys_;
  std::vector<NeighborKeys> neighbor_keys_;
  std::vector<ClientShares> client_shares_;
  std::vector<RoutedShares> routed_;
  std::vector<MaskedInput> masked_;
  std::vector<UnmaskRequest> requests_;
};

TEST_F(SecAggManualRound, TamperedCiphertextIsRejected) {
  Start();
  Advertise();
  ShareKeys();
  RoutedShares tampered = routed_[3];
  tampered.shares[1].ciphertext[20] ^= 0x04;
  absl::StatusOr<MaskedInput> y = clients_[3]->MaskInput(tampered, inputs_[3]);
  EXPECT_EQ(y.status().code(), absl::StatusCode::kPermissionDenied) << y.status();
  EXPECT_NE(y.status().message().find("failed authentication"), std::string::npos);
  // The client aborted for the round: the genuine message is refused too.
  EXPECT_EQ(clients_[3]->state(), SecAggClient::State::kAborted);
  EXPECT_EQ(clients_[3]->MaskInput(routed_[3], inputs_[3]).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(SecAggManualRound, RelabelledCiphertextIsRejected) {
  Start();
  Advertise();
  ShareKeys();
  // Present the share from one neighbour as coming from another: the key and
  // associated data bind (sender, recipient).
  RoutedShares relabelled = routed_[2];
  ASSERT_GE(relabelled.shares.size(), 2u);
  std::swap(relabelled.shares[0].ciphertext, relabelled.shares[1].ciphertext);
  EXPECT_EQ(clients_[2]->MaskInput(relabelled, inputs_[2]).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(SecAggManualRound, CiphertextReplayedFromAnotherRoundIsRejected) {
  // Round 41 with the same graph and clients' indices.
  Start(/*round_id=*/41);
  Advertise();
  ShareKeys();
  const std::vector<RoutedShares> old_routed = routed_;

  Start(/*round_id=*/43);
  Advertise();
  ShareKeys();
  RoutedShares replayed = routed_[1];
  replayed.shares[0].ciphertext = old_routed[1].shares[0].ciphertext;
  EXPECT_EQ(clients_[1]->MaskInput(replayed, inputs_[1]).status().code(),
            absl::StatusCode::kPermissionDenied);
  // A whole message of the old round is refused on its binding.
  EXPECT_EQ(clients_[2]->MaskInput(old_routed[2], inputs_[2]).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SecAggManualRound, MessagesBoundToAnotherRoundOrClientAreRejected) {
  Start();
  absl::StatusOr<ClientKeys> k = clients_[0]->AdvertiseKeys();
  ASSERT_TRUE(k.ok());
  ClientKeys other_round = *k;
  other_round.round_id = 7;
  EXPECT_EQ(server_->AcceptKeys(other_round).code(), absl::StatusCode::kInvalidArgument);
  ClientKeys unknown_client = *k;
  unknown_client.index = 99;
  EXPECT_EQ(server_->AcceptKeys(unknown_client).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(server_->AcceptKeys(*k).ok());
  // Out of phase.
  EXPECT_EQ(server_->AcceptMaskedInput(MaskedInput{42, 0, std::vector<uint32_t>(kParams)}).code(),
            absl::StatusCode::kFailedPrecondition);
  // A NeighborKeys addressed to another client.
  for (int u = 1; u < n_; ++u) ASSERT_TRUE(server_->AcceptKeys(*clients_[u]->AdvertiseKeys()).ok());
  std::vector<NeighborKeys> nk = *server_->CloseAdvertise();
  EXPECT_EQ(clients_[1]->ShareKeys(nk[2]).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SecAggManualRound, DuplicateMessagesAreRejectedAndChangeNothing) {
  Start();
  Advertise();
  EXPECT_EQ(server_->AcceptKeys(keys_[0]).code(), absl::StatusCode::kFailedPrecondition);  // closed
  ShareKeys();
  EXPECT_EQ(server_->AcceptShares(client_shares_[0]).code(), absl::StatusCode::kFailedPrecondition);

  // A duplicated share inside one RoutedShares.
  RoutedShares dup = routed_[4];
  dup.shares.push_back(dup.shares[0]);
  EXPECT_EQ(clients_[4]->MaskInput(dup, inputs_[4]).status().code(),
            absl::StatusCode::kInvalidArgument);
  Start();  // fresh round: the client above aborted
  Advertise();
  EXPECT_EQ(server_->AcceptKeys(keys_.back()).code(), absl::StatusCode::kFailedPrecondition);
  ShareKeys();

  // A masked input sent twice is added once.
  absl::StatusOr<MaskedInput> y0 = clients_[0]->MaskInput(routed_[0], inputs_[0]);
  ASSERT_TRUE(y0.ok());
  ASSERT_TRUE(server_->AcceptMaskedInput(*y0).ok());
  EXPECT_EQ(server_->AcceptMaskedInput(*y0).code(), absl::StatusCode::kAlreadyExists);
  masked_.push_back(*y0);
  for (size_t i = 1; i < routed_.size(); ++i) {
    const RoutedShares& m = routed_[i];
    ASSERT_TRUE(server_->AcceptMaskedInput(*clients_[m.index]->MaskInput(m, inputs_[m.index])).ok());
  }
  requests_ = *server_->CloseMaskedInput();
  std::vector<uint32_t> all;
  for (const UnmaskRequest& r : requests_) {
    absl::StatusOr<UnmaskResponse> resp = clients_[r.index]->Unmask(r);
    ASSERT_TRUE(resp.ok()) << resp.status();
    ASSERT_TRUE(server_->AcceptUnmask(*resp).ok());
    EXPECT_EQ(server_->AcceptUnmask(*resp).code(), absl::StatusCode::kAlreadyExists);
    all.push_back(r.index);
  }
  absl::StatusOr<AggregateResult> result = server_->Finish();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->sum, PlainSum(inputs_, all));
}

TEST_F(SecAggManualRound, LowOrderPublicKeysAreRejected) {
  Start();
  absl::StatusOr<ClientKeys> k = clients_[1]->AdvertiseKeys();
  ASSERT_TRUE(k.ok());
  ClientKeys bad = *k;
  bad.mask_public_key.fill(0);
  EXPECT_EQ(server_->AcceptKeys(bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(server_->AcceptKeys(*k).ok());
}

TEST_F(SecAggManualRound, DuplicateKeysInRoundZeroAreRejected) {
  Start();
  absl::StatusOr<ClientKeys> k = clients_[3]->AdvertiseKeys();
  ASSERT_TRUE(k.ok());
  ASSERT_TRUE(server_->AcceptKeys(*k).ok());
  EXPECT_EQ(server_->AcceptKeys(*k).code(), absl::StatusCode::kAlreadyExists);
  // The client itself will not advertise twice either.
  EXPECT_EQ(clients_[3]->AdvertiseKeys().status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SecAggManualRound, ClientRefusesToRevealBothSharesOfOnePeer) {
  Start();
  Advertise();
  ShareKeys();
  MaskAll();
  UnmaskRequest greedy = requests_[0];
  ASSERT_FALSE(greedy.survived.empty());
  // Ask for the mask key of a peer whose self-mask share is also requested.
  greedy.dropped.push_back(greedy.survived[0]);
  std::sort(greedy.dropped.begin(), greedy.dropped.end());
  absl::StatusOr<UnmaskResponse> r = clients_[0]->Unmask(greedy);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << r.status();
  EXPECT_NE(r.status().message().find("both"), std::string::npos);

  // One answer per round: a second request (even a legitimate one, which
  // could flip a peer from survived to dropped) is refused.
  absl::StatusOr<UnmaskResponse> first = clients_[1]->Unmask(requests_[1]);
  ASSERT_TRUE(first.ok()) << first.status();
  UnmaskRequest flipped = requests_[1];
  flipped.dropped.push_back(flipped.survived.back());
  flipped.survived.pop_back();
  std::sort(flipped.dropped.begin(), flipped.dropped.end());
  EXPECT_EQ(clients_[1]->Unmask(flipped).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SecAggManualRound, ServerRefusesResponsesWithBothSharesOrUnaskedShares) {
  Start();
  Advertise();
  ShareKeys();
  MaskAll();
  absl::StatusOr<UnmaskResponse> r = clients_[2]->Unmask(requests_[2]);
  ASSERT_TRUE(r.ok());
  UnmaskResponse both = *r;
  both.mask_key_shares.push_back({both.self_mask_shares[0].owner, both.self_mask_shares[0].value});
  EXPECT_EQ(server_->AcceptUnmask(both).code(), absl::StatusCode::kInvalidArgument);
  UnmaskResponse missing = *r;
  missing.self_mask_shares.pop_back();
  EXPECT_EQ(server_->AcceptUnmask(missing).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(server_->AcceptUnmask(*r).ok());
}

TEST_F(SecAggManualRound, ClientRefusesKeysOfNonNeighbours) {
  Start(42, 10, 4);
  Advertise();
  NeighborKeys forged = neighbor_keys_[0];
  uint32_t stranger = 0;
  while (stranger == 0 || config_.graph->AreNeighbors(0, stranger)) ++stranger;
  forged.neighbors.push_back({stranger, keys_[stranger].cipher_public_key,
                              keys_[stranger].mask_public_key});
  std::sort(forged.neighbors.begin(), forged.neighbors.end(),
            [](const PeerKeys& a, const PeerKeys& b) { return a.index < b.index; });
  EXPECT_EQ(clients_[0]->ShareKeys(forged).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SecAggManualRound, ServerRefusesIncompleteShareSets) {
  Start();
  Advertise();
  absl::StatusOr<ClientShares> s = clients_[0]->ShareKeys(neighbor_keys_[0]);
  ASSERT_TRUE(s.ok());
  ClientShares short_set = *s;
  short_set.shares.pop_back();
  EXPECT_EQ(server_->AcceptShares(short_set).code(), absl::StatusCode::kInvalidArgument);
  ClientShares truncated = *s;
  truncated.shares[0].ciphertext.pop_back();
  EXPECT_EQ(server_->AcceptShares(truncated).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(server_->AcceptShares(*s).ok());
  EXPECT_EQ(server_->AcceptShares(*s).code(), absl::StatusCode::kAlreadyExists);
}

TEST(SecAggRoundConfigTest, FromRunOptions) {
  protocols::SecAggOptions options;  // neighbors = 0 (default), threshold = 0.5
  absl::StatusOr<RoundConfig> config = MakeRoundConfig(options, 100, 1000, 5, Seed(3));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->num_neighbors(), 20);
  EXPECT_EQ(config->threshold, 10);
  options.neighbors = 7;
  options.threshold = 0.6;
  config = MakeRoundConfig(options, 100, 1000, 5, Seed(3));
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->num_neighbors(), 7);
  EXPECT_EQ(config->threshold, 5);
  options.neighbors = 200;
  EXPECT_FALSE(MakeRoundConfig(options, 100, 1000, 5, Seed(3)).ok());
  options.neighbors = 0;
  EXPECT_FALSE(MakeRoundConfig(options, 1, 1000, 5, Seed(3)).ok());
  EXPECT_FALSE(MakeRoundConfig(options, 10, 0, 5, Seed(3)).ok());
}

}  // namespace
}  // namespace fedfm::secagg
