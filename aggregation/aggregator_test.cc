#include "aggregation/aggregator.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace fedfm::aggregation {
namespace {

using protocols::AggregationOptions;
using protocols::DType;
using protocols::Shape;
using protocols::Tensor;
using protocols::TensorCoverage;
using protocols::TensorMap;
using protocols::Update;
using protocols::UpdateKind;

// A rank-4 LoRA pair plus a head and a tensor nobody trains.
//   lora_A: [r=4, in=3]   rank_dim 0
//   lora_B: [out=2, r=4]  rank_dim 1
//   head:   [3]
//   frozen: [2]
TensorMap Global() {
  TensorMap g;
  g.Set("lora_A", Tensor::FromFloats({4, 3}, std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
  g.Set("lora_B", Tensor::FromFloats({2, 4}, std::vector<float>{-1, -2, -3, -4, -5, -6, -7, -8}));
  g.Set("head", Tensor::FromFloats({3}, std::vector<float>{0.5f, 0.25f, 0.125f}));
  g.Set("frozen", Tensor::FromFloats({2}, std::vector<float>{42, 43}));
  return g;
}

// Random values inside the coverage, zeros outside.
Tensor RandomCovered(const Shape& shape, const TensorCoverage& c, std::mt19937& rng, float scale = 1.0f) {
  Tensor t = Tensor::Zeros(DType::kF32, shape);
  std::normal_distribution<float> normal(0.0f, scale);
  std::span<float> v = t.mutable_floats();
  protocols::ForEachCovered(t, c, [&](int64_t i) { v[i] = normal(rng); });
  return t;
}

// A LoRA client of rank r (1..4) over lora_A and lora_B.
Update LoraClient(const std::string& id, uint64_t n, int rank, std::mt19937& rng, float scale = 1.0f) {
  TensorMap g = Global();
  Update u{.client_id = id, .num_examples = n};
  for (auto [name, dim] : {std::pair<const char*, int>{"lora_A", 0}, {"lora_B", 1}}) {
    TensorCoverage c{name, dim, rank};
    u.coverage.tensors.push_back(c);
    u.delta.Set(name, RandomCovered(g.at(name).shape(), c, rng, scale));
  }
  return u;
}

// A partial-layer client: only the head, whole.
Update HeadClient(const std::string& id, uint64_t n, std::mt19937& rng) {
  Update u{.client_id = id, .num_examples = n};
  TensorCoverage c{"head", -1, 0};
  u.coverage.tensors.push_back(c);
  u.delta.Set("head", RandomCovered({3}, c, rng));
  return u;
}

std::unique_ptr<Aggregator> MakeFedAvg(const TensorMap& global, RoundContext ctx = {}) {
  AggregationOptions o;  // fedavg, server_lr 1
  auto agg = MakeAggregator(o, global, ctx);
  EXPECT_TRUE(agg.ok()) << agg.status();
  return std::move(agg).value();
}

// new - old, per tensor, in double.
std::vector<double> Moved(const TensorMap& before, const TensorMap& after, const std::string& name) {
  std::vector<float> a = before.at(name).ToFloat32(), b = after.at(name).ToFloat32();
  std::vector<double> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = static_cast<double>(b[i]) - a[i];
  return d;
}

TEST(AggregatorTest, FedAvgWeightsByNumExamples) {
  TensorMap global = Global();
  Update a{.client_id = "a", .num_examples = 1}, b{.client_id = "b", .num_examples = 3};
  a.coverage.tensors.push_back({"head", -1, 0});
  b.coverage.tensors.push_back({"head", -1, 0});
  a.delta.Set("head", Tensor::FromFloats({3}, std::vector<float>{4, -8, 1}));
  b.delta.Set("head", Tensor::FromFloats({3}, std::vector<float>{0, 8, 1}));
  auto agg = MakeFedAvg(global);
  ASSERT_TRUE(agg->Accept(a).ok());
  ASSERT_TRUE(agg->Accept(b).ok());
  auto next = agg->Finish();
  ASSERT_TRUE(next.ok()) << next.status();
  // (1·4 + 3·0)/4 = 1, (1·-8 + 3·8)/4 = 4, 1.
  EXPECT_EQ(Moved(global, *next, "head"), (std::vector<double>{1, 4, 1}));
  EXPECT_EQ(agg->stats().accepted, 2);
  EXPECT_EQ(agg->stats().accepted_examples, 4u);
  EXPECT_EQ(next->names(), global.names());
}

TEST(AggregatorTest, CoverageWeightedMeanOverHeterogeneousClients) {
  std::mt19937 rng(1);
  TensorMap global = Global();
  Update r2 = LoraClient("r2", 1, 2, rng);    // rank 2 of 4
  Update r4 = LoraClient("r4", 3, 4, rng);    // full rank
  Update head = HeadClient("head", 5, rng);   // partial-layer: head only
  auto agg = MakeFedAvg(global);
  for (const Update* u : {&r2, &r4, &head}) ASSERT_TRUE(agg->Accept(*u).ok()) << u->client_id;
  auto next = agg->Finish();
  ASSERT_TRUE(next.ok()) << next.status();

  // lora_A [4, 3]: rows 0-1 covered by both (weights 1 and 3), rows 2-3 by r4 only.
  std::span<const float> a2 = r2.delta.at("lora_A").floats(), a4 = r4.delta.at("lora_A").floats();
  std::vector<double> da = Moved(global, *next, "lora_A");
  for (int i = 0; i < 12; ++i) {
    const double expected = i < 6 ? (1.0 * a2[i] + 3.0 * a4[i]) / 4.0 : a4[i];
    EXPECT_NEAR(da[i], expected, 1e-5) << "lora_A element " << i;
  }
  // lora_B [2, 4]: columns 0-1 covered by both, columns 2-3 by r4 only.
  std::span<const float> b2 = r2.delta.at("lora_B").floats(), b4 = r4.delta.at("lora_B").floats();
  std::vector<double> db = Moved(global, *next, "lora_B");
  for (int i = 0; i < 8; ++i) {
    const double expected = i % 4 < 2 ? (1.0 * b2[i] + 3.0 * b4[i]) / 4.0 : b4[i];
    EXPECT_NEAR(db[i], expected, 1e-5) << "lora_B element " << i;
  }
  // head: the partial-layer client alone, whatever its weight.
  std::vector<double> dh = Moved(global, *next, "head");
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(dh[i], head.delta.at("head").floats()[i], 1e-6);
  // Nobody covered "frozen": unchanged, bit for bit.
  EXPECT_TRUE(next->at("frozen").Identical(global.at("frozen")));
}

TEST(AggregatorTest, MeanEqualsExactClientIdOrderedReference) {
  std::mt19937 rng(2);
  TensorMap global = Global();
  std::vector<Update> updates;
  for (int c = 0; c < 12; ++c) {
    updates.push_back(LoraClient(absl::StrCat("c", c), 1 + c * 7, 1 + c % 4, rng, std::pow(10.0f, c % 5 - 2)));
  }
  auto agg = MakeFedAvg(global);
  for (const Update& u : updates) ASSERT_TRUE(agg->Accept(u).ok());
  TensorMap next = *agg->Finish();
  // Reference: long double sums per coordinate over covering clients.
  for (const char* name : {"lora_A", "lora_B"}) {
    const Tensor& g = global.at(name);
    std::vector<long double> sum(g.numel(), 0), weight(g.numel(), 0);
    for (const Update& u : updates) {
      const Tensor& t = u.delta.at(name);
      protocols::ForEachCovered(t, *u.coverage.Find(name), [&](int64_t i) {
        sum[i] += static_cast<long double>(t.floats()[i]) * u.num_examples;
        weight[i] += u.num_examples;
      });
    }
    std::vector<double> d = Moved(global, next, name);
    for (int64_t i = 0; i < g.numel(); ++i) {
      const double expected = static_cast<double>(sum[i] / weight[i]);
      EXPECT_NEAR(d[i], expected, 1e-5 * (1 + std::fabs(expected))) << name << " " << i;
    }
  }
}

TEST(AggregatorTest, ConcurrentAcceptsEqualSequentialBitwise) {
  // Updates accepted from several threads at once (the values are added
  // outside the round's lock, under per-stripe locks) give the same result,
  // bit for bit, as one thread; a client sent twice from two threads counts
  // once, a non-finite update is dropped.
  TensorMap global;
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> big(70001);  // several stripes and a partial one
  for (float& x : big) x = normal(rng);
  global.Set("big", Tensor::FromFloats({static_cast<int64_t>(big.size())}, big));
  global.Set("head", Tensor::FromFloats({3}, std::vector<float>{0.5f, 0.25f, 0.125f}));
  std::vector<Update> updates;
  for (int c = 0; c < 24; ++c) {
    Update u{.client_id = absl::StrCat("client-", c), .num_examples = 1 + static_cast<uint64_t>(c * 7) % 50};
    for (const char* name : {"big", "head"}) {
      TensorCoverage cov{name, -1, 0};
      u.coverage.tensors.push_back(cov);
      u.delta.Set(name, RandomCovered(global.at(name).shape(), cov, rng, std::pow(10.0f, c % 5 - 4.0f)));
    }
    updates.push_back(u);
  }
  std::vector<Update> sent = updates;
  for (int c = 0; c < 6; ++c) sent.push_back(updates[c * 3]);  // sent twice
  Update bad = updates[1];
  bad.client_id = "client-nan";
  Tensor poisoned = bad.delta.at("big");
  poisoned.mutable_floats()[12345] = std::numeric_limits<float>::quiet_NaN();
  bad.delta.Set("big", poisoned);
  sent.push_back(bad);
  std::shuffle(sent.begin(), sent.end(), rng);

  auto sequential = MakeFedAvg(global);
  for (const Update& u : updates) ASSERT_TRUE(sequential->Accept(u).ok());
  auto expected = sequential->Finish();
  ASSERT_TRUE(expected.ok()) << expected.status();

  for (int trial = 0; trial < 3; ++trial) {
    auto agg = MakeFedAvg(global);
    std::atomic<size_t> next{0};
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        for (size_t i = next++; i < sent.size(); i = next++) ok += agg->Accept(sent[i]).ok();
      });
    }
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(ok.load(), 24);
    EXPECT_EQ(agg->stats().accepted, 24);
    EXPECT_EQ(agg->stats().dropped, 7);
    auto result = agg->Finish();
    ASSERT_TRUE(result.ok()) << result.status();
    for (const std::string& name : global.names()) {
      EXPECT_TRUE(result->at(name).Identical(expected->at(name))) << name << " differs in trial " << trial;
    }
  }
}

// The same updates in shuffled arrival orders give a bit-identical global
// state, for FedAvg and for a stateful optimizer restored from one state.
TEST(AggregatorTest, ArrivalOrderIndependentBitwise) {
  std::mt19937 rng(3);
  TensorMap global = Global();
  std::vector<Update> updates;
  for (int c = 0; c < 24; ++c) {
    // Magnitudes from 1e-6 to 1e3 so that float sums would depend on order.
    const float scale = std::pow(10.0f, static_cast<float>(c % 10) - 6.0f);
    updates.push_back(c % 5 == 4 ? HeadClient(absl::StrCat("client-", c), 1 + c, rng)
                                 : LoraClient(absl::StrCat("client-", c), 1 + (c * 37) % 101, 1 + c % 4, rng,
                                              scale));
  }
  for (const char* algorithm : {"fedavg", "fedadam"}) {
    SCOPED_TRACE(algorithm);
    AggregationOptions o;
    o.algorithm = algorithm;
    o.server_lr = 0.01;
    TensorMap first;
    for (int trial = 0; trial < 6; ++trial) {
      std::shuffle(updates.begin(), updates.end(), rng);
      auto optimizer = MakeServerOptimizer(o);
      ASSERT_TRUE(optimizer.ok());
      auto agg = MakeAggregator(o, global, RoundContext{.optimizer = optimizer->get()});
      ASSERT_TRUE(agg.ok()) << agg.status();
      for (const Update& u : updates) ASSERT_TRUE((*agg)->Accept(u).ok());
      auto next = (*agg)->Finish();
      ASSERT_TRUE(next.ok()) << next.status();
      if (trial == 0) {
        first = *next;
        continue;
      }
      for (const std::string& name : global.names()) {
        EXPECT_TRUE(next->at(name).Identical(first.at(name))) << name << " differs in trial " << trial;
      }
    }
  }
}

TEST(AggregatorTest, RejectsBadUpdatesNamingClientAndTensorAndFinishes) {
  std::mt19937 rng(4);
  TensorMap global = Global();
  Update good = LoraClient("good", 2, 4, rng);

  Update nan = LoraClient("nan-client", 2, 4, rng);
  nan.delta.FindMutable("lora_B")->mutable_floats()[1] = std::numeric_limits<float>::quiet_NaN();
  Update shape = LoraClient("shape-client", 2, 4, rng);
  shape.delta.Set("lora_A", Tensor::Zeros(DType::kF32, {3, 4}));
  Update outside = LoraClient("outside-client", 2, 2, rng);
  outside.delta.FindMutable("lora_A")->mutable_floats()[11] = 1.0f;  // row 3, rank is 2
  Update unknown = HeadClient("unknown-client", 1, rng);
  unknown.coverage.tensors[0].name = "not_a_tensor";
  unknown.delta = TensorMap();
  unknown.delta.Set("not_a_tensor", Tensor::Zeros(DType::kF32, {3}));
  Update twice = LoraClient("good", 2, 4, rng);
  Update seeds{.client_id = "zo", .num_examples = 1, .kind = UpdateKind::kSeedScalars, .seed_scalars = {1, 2}};
  Update empty{.client_id = "empty-client", .num_examples = 3};
  Update doubled = HeadClient("doubled-coverage", 1, rng);
  doubled.coverage.tensors.push_back({"head", -1, 0});
  doubled.delta.Set("lora_A", Tensor::Zeros(DType::kF32, {4, 3}));

  auto agg = MakeFedAvg(global);
  ASSERT_TRUE(agg->Accept(good).ok());
  struct Bad {
    const Update* update;
    std::vector<std::string> words;
  };
  const Bad bad[] = {
      {&nan, {"nan-client", "lora_B", "non-finite"}},
      {&shape, {"shape-client", "lora_A", "shape [3, 4]"}},
      {&outside, {"outside-client", "lora_A", "outside its declared coverage"}},
      {&unknown, {"unknown-client", "not_a_tensor"}},
      {&twice, {"good", "second update"}},
      {&seeds, {"zo", "seed pool"}},
      {&doubled, {"doubled-coverage", "head", "twice"}},
      {&empty, {"empty-client", "covers no tensor"}},
  };
  for (const Bad& b : bad) {
    absl::Status s = agg->Accept(*b.update);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << b.update->client_id;
    for (const std::string& w : b.words) EXPECT_NE(s.message().find(w), std::string::npos) << w << " in: " << s;
  }
  EXPECT_EQ(agg->stats().accepted, 1);
  EXPECT_EQ(agg->stats().dropped, 8);
  EXPECT_EQ(agg->stats().drop_reasons.size(), 8u);
  auto next = agg->Finish();
  ASSERT_TRUE(next.ok()) << next.status();
  // Only the good update counted.
  std::vector<double> d = Moved(global, *next, "lora_A");
  for (int i = 0; i < 12; ++i) EXPECT_NEAR(d[i], good.delta.at("lora_A").floats()[i], 1e-5);
}

TEST(AggregatorTest, RoundLifecycleErrors) {
  std::mt19937 rng(5);
  TensorMap global = Global();
  auto agg = MakeFedAvg(global, RoundContext{.min_updates = 2});
  ASSERT_TRUE(agg->Accept(LoraClient("a", 1, 2, rng)).ok());
  auto early = agg->Finish();
  EXPECT_EQ(early.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(early.status().message().find("only 1 updates accepted"), std::string::npos) << early.status();
  ASSERT_TRUE(agg->Accept(LoraClient("b", 1, 2, rng)).ok());  // the round may still complete
  ASSERT_TRUE(agg->Finish().ok());
  EXPECT_EQ(agg->Finish().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(agg->Accept(LoraClient("c", 1, 2, rng)).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(MakeFedAvg(global)->Finish().status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(AggregatorTest, FactoryRejectsInconsistentSetups) {
  TensorMap global = Global();
  AggregationOptions adam;
  adam.algorithm = "fedadam";
  auto no_optimizer = MakeAggregator(adam, global, {});
  EXPECT_EQ(no_optimizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(no_optimizer.status().message().find("ServerOptimizer"), std::string::npos);

  AggregationOptions avgm;
  avgm.algorithm = "fedavgm";
  auto optimizer = MakeServerOptimizer(avgm);
  ASSERT_TRUE(optimizer.ok());
  EXPECT_FALSE(MakeAggregator(adam, global, RoundContext{.optimizer = optimizer->get()}).ok());

  EXPECT_FALSE(MakeAggregator(AggregationOptions{}, global, RoundContext{.seed_pool = {1, 2}}).ok());
  AggregationOptions robust;
  robust.robust = "geomedian";
  EXPECT_FALSE(MakeAggregator(robust, global, {}).ok());
  EXPECT_FALSE(MakeAggregator(AggregationOptions{}, TensorMap(), {}).ok());
}

// A stand-in for the zeroth-order module: direction(seed)[i] is a fixed
// function of (seed, i); writes one tensor, "head" [3] unless told.
class FakeReplay : public SeedReplay {
 public:
  explicit FakeReplay(std::string name = "head", Shape shape = {3}) : name_(std::move(name)), shape_(shape) {}
  static float Direction(uint64_t seed, int64_t i) { return static_cast<float>((seed * 31 + i * 7) % 5) - 2.0f; }
  absl::Status Apply(const std::vector<uint64_t>& seeds, const std::vector<float>& weights,
                     TensorMap& delta) override {
    ++calls;
    last_seeds = seeds;
    last_weights = weights;
    Tensor t = Tensor::Zeros(DType::kF32, shape_);
    for (size_t k = 0; k < seeds.size(); ++k) {
      for (int64_t i = 0; i < t.numel(); ++i) t.mutable_floats()[i] += weights[k] * Direction(seeds[k], i);
    }
    delta.Set(name_, t);
    return absl::OkStatus();
  }
  int calls = 0;
  std::vector<uint64_t> last_seeds;
  std::vector<float> last_weights;

 private:
  std::string name_;
  Shape shape_;
};

TEST(AggregatorTest, SeedScalarUpdatesAverageThenReplayOnce) {
  std::mt19937 rng(6);
  TensorMap global = Global();
  FakeReplay replay;
  RoundContext ctx{.seed_pool = {11, 22, 33}, .seed_replay = &replay};
  auto agg = MakeFedAvg(global, ctx);
  Update z1{.client_id = "z1", .num_examples = 1, .kind = UpdateKind::kSeedScalars, .seed_scalars = {0.5f, -1, 2}};
  Update z2{.client_id = "z2", .num_examples = 3, .kind = UpdateKind::kSeedScalars, .seed_scalars = {1.5f, 1, -2}};
  Update dense = HeadClient("dense", 2, rng);
  Update lora = LoraClient("lora", 2, 4, rng);
  Update short_zo{.client_id = "z3", .num_examples = 1, .kind = UpdateKind::kSeedScalars, .seed_scalars = {1, 2}};
  for (const Update* u : {&z1, &z2, &dense, &lora}) ASSERT_TRUE(agg->Accept(*u).ok()) << u->client_id;
  absl::Status s = agg->Accept(short_zo);
  EXPECT_NE(s.message().find("holds 2 seed scalars, the round's pool has 3"), std::string::npos) << s;
  auto next = agg->Finish();
  ASSERT_TRUE(next.ok()) << next.status();
  ASSERT_EQ(replay.calls, 1);
  EXPECT_EQ(replay.last_seeds, ctx.seed_pool);
  // Mean scalars weighted by examples: (1·z1 + 3·z2) / 4.
  EXPECT_EQ(replay.last_weights, (std::vector<float>{1.25f, 0.5f, -1.0f}));
  // head (zo_mixing "share"): dense + 4/6 · replay(mean).
  std::vector<double> dh = Moved(global, *next, "head");
  for (int i = 0; i < 3; ++i) {
    double zo = 0;
    for (int k = 0; k < 3; ++k) zo += replay.last_weights[k] * FakeReplay::Direction(ctx.seed_pool[k], i);
    EXPECT_NEAR(dh[i], dense.delta.at("head").floats()[i] + 4.0 * zo / 6.0, 1e-5) << i;
  }
  // lora_A: the LoRA client alone (the replay did not write it).
  std::vector<double> da = Moved(global, *next, "lora_A");
  for (int i = 0; i < 12; ++i) EXPECT_NEAR(da[i], lora.delta.at("lora_A").floats()[i], 1e-5);
}

TEST(AggregatorTest, ShareMixingKeepsTheDenseMeanAndAddsTheReplayAtItsShare) {
  // A rank-2 LoRA client (weight 2) covers rows 0-1 of lora_A; two
  // zeroth-order clients (weights 1 and 3) replay into all of lora_A.
  std::mt19937 rng(8);
  TensorMap global = Global();
  const Update lora = LoraClient("lora", 2, 2, rng);
  const Update z1{.client_id = "z1", .num_examples = 1, .kind = UpdateKind::kSeedScalars, .seed_scalars = {0.5f, -1}};
  const Update z2{.client_id = "z2", .num_examples = 3, .kind = UpdateKind::kSeedScalars, .seed_scalars = {1.5f, 1}};
  const std::vector<uint64_t> pool = {11, 22};
  const std::vector<float> mean = {1.25f, 0.5f};  // (1·z1 + 3·z2) / 4
  auto run = [&](const std::string& mixing) {
    FakeReplay replay("lora_A", {4, 3});
    AggregationOptions o;
    o.zo_mixing = mixing;
    auto agg = MakeAggregator(o, global, RoundContext{.seed_pool = pool, .seed_replay = &replay});
    EXPECT_TRUE(agg.ok()) << agg.status();
    for (const Update* u : {&lora, &z1, &z2}) EXPECT_TRUE((*agg)->Accept(*u).ok()) << u->client_id;
    auto next = (*agg)->Finish();
    EXPECT_TRUE(next.ok()) << next.status();
    return Moved(global, *next, "lora_A");
  };
  const std::vector<double> share = run("share"), pooled = run("mean");
  for (int i = 0; i < 12; ++i) {
    const double zo = mean[0] * FakeReplay::Direction(pool[0], i) + mean[1] * FakeReplay::Direction(pool[1], i);
    if (i < 6) {  // covered by the LoRA client and the replay
      const double d = lora.delta.at("lora_A").floats()[i];
      EXPECT_NEAR(share[i], d + zo * 4.0 / 6.0, 1e-5) << i;
      EXPECT_NEAR(pooled[i], (2.0 * d + 4.0 * zo) / 6.0, 1e-5) << i;
    } else {  // the replay alone: its mean either way
      EXPECT_NEAR(share[i], zo, 1e-5) << i;
      EXPECT_NEAR(pooled[i], zo, 1e-5) << i;
    }
  }
}

TEST(AggregatorTest, SnrMixingWeighsTheReplayBySignalShareWhereDenseClientsCovered) {
  // As above, with a third pool slot nobody used: K = 2 slots carry the
  // replay into d = 12 elements of lora_A, so where the LoRA client
  // covered (rows 0-1) the replay joins at 4/6 of the weight times
  // K / (K + d) = 2/14; rows 2-3 are the replay's alone and take it whole.
  std::mt19937 rng(8);
  TensorMap global = Global();
  const Update lora = LoraClient("lora", 2, 2, rng);
  const Update z1{.client_id = "z1", .num_examples = 1, .kind = UpdateKind::kSeedScalars,
                  .seed_scalars = {0.5f, -1, 0}};
  const Update z2{.client_id = "z2", .num_examples = 3, .kind = UpdateKind::kSeedScalars,
                  .seed_scalars = {1.5f, 1, 0}};
  const std::vector<uint64_t> pool = {11, 22, 33};
  const std::vector<float> mean = {1.25f, 0.5f, 0.0f};
  FakeReplay replay("lora_A", {4, 3});
  AggregationOptions o;
  o.zo_mixing = "snr";
  auto agg = MakeAggregator(o, global, RoundContext{.seed_pool = pool, .seed_replay = &replay});
  ASSERT_TRUE(agg.ok()) << agg.status();
  for (const Update* u : {&lora, &z1, &z2}) ASSERT_TRUE((*agg)->Accept(*u).ok()) << u->client_id;
  auto next = (*agg)->Finish();
  ASSERT_TRUE(next.ok()) << next.status();
  ASSERT_EQ(replay.last_weights, mean);
  const std::vector<double> moved = Moved(global, *next, "lora_A");
  for (int i = 0; i < 12; ++i) {
    const double zo = mean[0] * FakeReplay::Direction(pool[0], i) + mean[1] * FakeReplay::Direction(pool[1], i);
    const double expected = i < 6 ? lora.delta.at("lora_A").floats()[i] + zo * (4.0 / 6.0) * (2.0 / 14.0) : zo;
    EXPECT_NEAR(moved[i], expected, 1e-5) << i;
  }
}

class BadReplay : public SeedReplay {
 public:
  absl::Status Apply(const std::vector<uint64_t>&, const std::vector<float>&, TensorMap& delta) override {
    delta.Set("head", Tensor::Zeros(DType::kF32, {4}));
    return absl::OkStatus();
  }
};

TEST(AggregatorTest, MisbehavingReplayFailsTheRound) {
  TensorMap global = Global();
  BadReplay replay;
  auto agg = MakeFedAvg(global, RoundContext{.seed_pool = {1}, .seed_replay = &replay});
  ASSERT_TRUE(agg->Accept(Update{.client_id = "z", .num_examples = 1, .kind = UpdateKind::kSeedScalars,
                                 .seed_scalars = {1}})
                  .ok());
  auto next = agg->Finish();
  EXPECT_EQ(next.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(next.status().message().find("seed replay produced tensor \"head\""), std::string::npos);
}

TEST(AggregatorTest, FedAdamRoundsThroughTheAggregator) {
  // Two rounds of FedAdam through aggregators equal stepping the optimizer
  // with the hand-made mean directly.
  std::mt19937 rng(7);
  TensorMap global = Global();
  AggregationOptions o;
  o.algorithm = "fedadam";
  o.server_lr = 0.1;
  auto via_agg = MakeServerOptimizer(o);
  auto direct = MakeServerOptimizer(o);
  ASSERT_TRUE(via_agg.ok() && direct.ok());
  TensorMap x = global, y = global;
  for (int round = 0; round < 2; ++round) {
    Update a = HeadClient("a", 1, rng), b = HeadClient("b", 1, rng);
    auto agg = MakeAggregator(o, x, RoundContext{.optimizer = via_agg->get()});
    ASSERT_TRUE(agg.ok());
    ASSERT_TRUE((*agg)->Accept(a).ok());
    ASSERT_TRUE((*agg)->Accept(b).ok());
    x = *(*agg)->Finish();
    TensorMap delta;
    for (const auto& [name, t] : global) delta.Set(name, Tensor::Zeros(DType::kF32, t.shape()));
    for (int i = 0; i < 3; ++i) {
      delta.FindMutable("head")->mutable_floats()[i] = static_cast<float>(
          (static_cast<double>(a.delta.at("head").floats()[i]) + b.delta.at("head").floats()[i]) / 2);
    }
    y = *(*direct)->Step(y, delta);
    for (const std::string& name : global.names()) EXPECT_TRUE(x.at(name).Identical(y.at(name))) << name;
  }
}

}  // namespace
}  // namespace fedfm::aggregation
