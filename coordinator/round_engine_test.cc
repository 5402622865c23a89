// RoundEngine driven by hand: plaintext updates, refusals with their
// reasons, deadlines, evaluation rounds, early stop, the progressive partial
// schedule, SecAgg grouping and the dashboard. End-to-end rounds with the
// client runtime, SecAgg+ dropouts and crash-resume are in
// tests/federation_test.cc.
#include "coordinator/round_engine.h"

#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/round_engine_seed_replay.h"
#include "coordinator/sqlite_store.h"
#include "coordinator/testing/engine_fixture.h"
#include "gtest/gtest.h"
#include "protocols/config/config.h"
#include "protocols/optimizer_state.h"
#include "protocols/status_macros.h"

namespace fedfm::coordinator {
namespace {

using protocols::Binding;
using protocols::Coverage;
using protocols::Method;
using protocols::Phase;
using protocols::PollKind;
using protocols::PollResponse;
using protocols::Task;
using protocols::Tensor;
using protocols::TensorMap;
using protocols::Update;
using protocols::UpdateKind;

protocols::RunConfig Config() {
  protocols::RunConfig c = SmallRunConfig(/*seed=*/42, /*clients_per_round=*/3);
  c.lora.client_ranks = {2, 4};
  return c;
}

// Writes each seed's index + 1, times the weight, into every element.
class CountingReplay final : public aggregation::SeedReplay {
 public:
  absl::Status Apply(const std::vector<uint64_t>& seeds, const std::vector<float>& weights,
                     TensorMap& delta) override {
    const TensorMap g = TwoBlockLoraState();
    for (const auto& [name, t] : g) {
      double s = 0;
      for (size_t k = 0; k < seeds.size(); ++k) s += (k + 1) * 1e-3 * weights[k];
      Tensor d = Tensor::Zeros(protocols::DType::kF32, t.shape());
      for (float& x : d.mutable_floats()) x = static_cast<float>(s);
      delta.Set(name, d);
    }
    return absl::OkStatus();
  }
};

// A random update for `task`: covered elements in [-0.2, 0.2], or K seed
// scalars.
Update MakeUpdate(const std::string& id, const Task& task, uint32_t seed, uint64_t examples = 8) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-0.2f, 0.2f);
  Update up;
  up.client_id = id;
  up.num_examples = examples;
  up.metrics["train_loss"] = 1.0 + seed % 7;
  if (!task.seed_pool.empty()) {
    up.kind = UpdateKind::kSeedScalars;
    for (size_t k = 0; k < task.seed_pool.size(); ++k) up.seed_scalars.push_back(u(rng));
    return up;
  }
  const TensorMap g = TwoBlockLoraState();
  for (const protocols::TensorCoverage& c : task.coverage.tensors) {
    Tensor t = Tensor::Zeros(protocols::DType::kF32, g.at(c.name).shape());
    std::span<float> v = t.mutable_floats();
    protocols::ForEachCovered(t, c, [&](int64_t i) { v[i] = u(rng); });
    up.delta.Set(c.name, t);
  }
  up.coverage = task.coverage;
  return up;
}

class RoundEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenSqliteStore(kInMemoryStore);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  void Build(const protocols::RunConfig& config, RoundEngineOptions options = {}) {
    config_ = config;
    if (!options.method_rule) options.method_rule = PinnedMethods();
    options.selection_wait_ms = 1000;
    auto engine = RoundEngine::Create(config_, *store_, clock_, TwoBlockLoraState(), TwoBlockDims(), &replay_,
                                      std::move(options));
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
  }

  void Register(const std::vector<std::string>& ids) {
    for (const std::string& id : ids) {
      auto r = engine_->RegisterClient(id, id, {});
      ASSERT_TRUE(r.ok()) << r.status();
    }
  }

  PollResponse Poll(const std::string& id) {
    auto r = engine_->Poll({.client_id = id, .have_model_version = ""});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : PollResponse{};
  }

  // Polls every client (the last poll may start a round) and returns the
  // answers of the second pass, when everyone has seen the round.
  std::map<std::string, PollResponse> PollAll(const std::vector<std::string>& ids) {
    for (const std::string& id : ids) Poll(id);
    if (engine_->Status().phase == Phase::kIdle) {
      // Fewer clients than clients_per_round: the engine waits a while.
      clock_.AdvanceMs(1001);
      EXPECT_TRUE(engine_->Tick().ok());
    }
    std::map<std::string, PollResponse> out;
    for (const std::string& id : ids) out[id] = Poll(id);
    return out;
  }

  Binding Bind(const PollResponse& r, Phase phase) {
    Binding b = r.binding;
    b.phase = phase;
    b.sequence = ++sequence_[b.client_id];
    return b;
  }

  protocols::RunConfig config_;
  ManualClock clock_;
  std::unique_ptr<Store> store_;
  CountingReplay replay_;
  std::unique_ptr<RoundEngine> engine_;
  std::map<std::string, uint64_t> sequence_;
};

TEST(DefaultCoverageTest, FollowsThePeftNamingConvention) {
  const TensorMap g = TwoBlockLoraState();
  const protocols::RunConfig c = Config();
  auto lora = DefaultCoverage(g, {.method = Method::kLora, .lora_rank = 2}, c, TwoBlockDims());
  ASSERT_TRUE(lora.ok());
  ASSERT_EQ(lora->tensors.size(), 5u);
  EXPECT_EQ(*lora->Find("layers.0.q_proj.lora_A"), (protocols::TensorCoverage{"layers.0.q_proj.lora_A", 0, 2}));
  EXPECT_EQ(*lora->Find("layers.1.q_proj.lora_B"), (protocols::TensorCoverage{"layers.1.q_proj.lora_B", 1, 2}));
  EXPECT_EQ(lora->Find("head.weight")->rank_dim, -1);
  // Full rank covers whole tensors.
  auto full = DefaultCoverage(g, {.method = Method::kLora, .lora_rank = 4}, c, TwoBlockDims());
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->Find("layers.0.q_proj.lora_A")->rank_dim, -1);

  auto partial = DefaultCoverage(g, {.method = Method::kPartial, .lora_rank = 4, .top_blocks = 1}, c, TwoBlockDims());
  ASSERT_TRUE(partial.ok());
  EXPECT_EQ(partial->Find("layers.0.q_proj.lora_A"), nullptr);
  EXPECT_NE(partial->Find("layers.1.q_proj.lora_A"), nullptr);
  EXPECT_NE(partial->Find("head.weight"), nullptr);

  protocols::RunConfig fw = c;
  fw.partial.full_weights = true;
  auto weights_only = DefaultCoverage(g, {.method = Method::kPartial, .top_blocks = 1}, fw, TwoBlockDims());
  ASSERT_TRUE(weights_only.ok());
  EXPECT_EQ(weights_only->tensors.size(), 1u);  // only the head: this state holds no block weights

  protocols::RunConfig ffa = c;
  ffa.lora.freeze_a = true;
  auto frozen = DefaultCoverage(g, {.method = Method::kLora, .lora_rank = 2}, ffa, TwoBlockDims());
  ASSERT_TRUE(frozen.ok());
  EXPECT_EQ(frozen->tensors.size(), 3u);
  EXPECT_EQ(frozen->Find("layers.0.q_proj.lora_A"), nullptr);

  auto zo = DefaultCoverage(g, {.method = Method::kZerothOrder}, c, TwoBlockDims());
  ASSERT_TRUE(zo.ok());
  EXPECT_EQ(zo->tensors.size(), 5u);

  TensorMap lonely;
  lonely.Set("layers.0.mlp.weight", Tensor::Zeros(protocols::DType::kF32, {2}));
  EXPECT_EQ(DefaultCoverage(lonely, {.method = Method::kLora, .lora_rank = 2}, c, TwoBlockDims()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// train.optimizer_state = "global": a moment is covered like its tensor,
// optimizer.step like a head; zeroth order neither covers nor replays them.
TEST(DefaultCoverageTest, OptimizerStateFollowsItsTensorAndZerothOrderLeavesIt) {
  absl::StatusOr<TensorMap> g = protocols::WithZeroOptimizerState(TwoBlockLoraState());
  ASSERT_TRUE(g.ok()) << g.status();
  const protocols::RunConfig c = Config();
  const std::string m = protocols::kExpAvgPrefix, v = protocols::kExpAvgSqPrefix;
  auto lora = DefaultCoverage(*g, {.method = Method::kLora, .lora_rank = 2}, c, TwoBlockDims());
  ASSERT_TRUE(lora.ok());
  EXPECT_EQ(lora->tensors.size(), 3u * 5 + 1);
  EXPECT_EQ(*lora->Find(m + "layers.0.q_proj.lora_A"), (protocols::TensorCoverage{m + "layers.0.q_proj.lora_A", 0, 2}));
  EXPECT_EQ(*lora->Find(v + "layers.1.q_proj.lora_B"), (protocols::TensorCoverage{v + "layers.1.q_proj.lora_B", 1, 2}));
  EXPECT_EQ(*lora->Find(protocols::kOptimizerStepName), (protocols::TensorCoverage{"optimizer.step", -1, 0}));
  auto partial = DefaultCoverage(*g, {.method = Method::kPartial, .lora_rank = 4, .top_blocks = 1}, c, TwoBlockDims());
  ASSERT_TRUE(partial.ok());
  EXPECT_EQ(partial->Find(m + "layers.0.q_proj.lora_A"), nullptr);
  EXPECT_NE(partial->Find(v + "layers.1.q_proj.lora_A"), nullptr);
  EXPECT_NE(partial->Find(protocols::kOptimizerStepName), nullptr);
  auto zo = DefaultCoverage(*g, {.method = Method::kZerothOrder}, c, TwoBlockDims());
  ASSERT_TRUE(zo.ok());
  EXPECT_EQ(zo->tensors.size(), 5u);
  for (const protocols::TensorCoverage& t : zo->tensors) EXPECT_FALSE(protocols::IsOptimizerState(t.name)) << t.name;

  SeedPoolReplay replay(*g, /*learning_rate=*/1e-3, zeroth_order::NoiseKind::kGaussian);
  TensorMap delta;
  ASSERT_TRUE(replay.Apply({11, 12}, {0.5f, -0.25f}, delta).ok());
  EXPECT_EQ(delta.names(), TwoBlockLoraState().names());
}

TEST_F(RoundEngineTest, PlaintextRoundCommitsTheCoverageWeightedAggregate) {
  Build(Config());
  const std::vector<std::string> ids = {"lora2-a", "lora4-b", "partial-c"};
  Register(ids);
  auto polls = PollAll(ids);
  for (const auto& [id, r] : polls) {
    ASSERT_EQ(r.kind, PollKind::kTrain) << id << ": " << r.reason;
    EXPECT_EQ(r.binding.round, 1);
    EXPECT_EQ(r.task.round, 1);
    EXPECT_FALSE(r.task.secagg.enabled);
  }
  EXPECT_EQ(polls["lora2-a"].task.lora_rank, 2);
  EXPECT_EQ(polls["lora2-a"].task.coverage.Find("layers.0.q_proj.lora_A")->rank, 2);
  EXPECT_EQ(polls["partial-c"].task.method, Method::kPartial);
  const std::string v0 = polls["lora2-a"].model_version;

  // The expected next state: the same updates through a plain aggregator.
  auto agg = aggregation::MakeAggregator(config_.aggregation, TwoBlockLoraState(), {.min_updates = 2});
  ASSERT_TRUE(agg.ok());
  uint32_t seed = 1;
  std::map<std::string, Update> updates;
  for (const auto& [id, r] : polls) {
    updates[id] = MakeUpdate(id, r.task, seed++, /*examples=*/8 * seed);
    ASSERT_TRUE((*agg)->Accept(updates[id]).ok());
  }
  auto expected = (*agg)->Finish();
  ASSERT_TRUE(expected.ok());

  for (const auto& [id, r] : polls) {
    ASSERT_TRUE(engine_->SubmitUpdate(Bind(r, Phase::kCollect), updates[id]).ok()) << id;
  }
  RoundEngineStatus s = engine_->Status();
  EXPECT_EQ(s.round, 2);
  EXPECT_NE(s.model_version, v0);
  auto model = engine_->GetModel(s.model_version);
  ASSERT_TRUE(model.ok()) << model.status();
  for (const auto& [name, t] : *expected) {
    EXPECT_TRUE(model->state.at(name).Identical(t)) << name;
  }
  // The old version is still downloadable; an unknown one is not.
  EXPECT_TRUE(engine_->GetModel(v0).ok());
  EXPECT_EQ(engine_->GetModel(std::string(64, 'a')).status().code(), absl::StatusCode::kNotFound);

  auto parts = store_->ListParticipants(engine_->run_id(), 1);
  ASSERT_TRUE(parts.ok());
  ASSERT_EQ(parts->size(), 3u);
  for (const ParticipantRecord& p : *parts) EXPECT_EQ(p.status, ParticipantStatus::kUploaded) << p.client_id;
  EXPECT_EQ((*parts)[0].rank, 2);
  auto history = engine_->History();
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0].round, 1);
  EXPECT_EQ(history[0].methods[Method::kLora].participants, 2);
  EXPECT_EQ(history[0].methods[Method::kPartial].participants, 1);
  // train_loss: the num_examples-weighted mean of the clients' values.
  double num = 0, den = 0;
  for (const auto& [id, u] : updates) {
    num += u.num_examples * u.metrics.at("train_loss");
    den += u.num_examples;
  }
  EXPECT_NEAR(history[0].metrics.at("train_loss"), num / den, 1e-12);
}

// A poll during a round was for that round: when it ends, its participants
// are not available again until they ask for work, so a next round does not
// start at the commit from their stale polls and take the same clients again.
TEST_F(RoundEngineTest, TheNextRoundSamplesClientsThatPolledSinceTheLastEnded) {
  protocols::RunConfig c = Config();
  c.rounds.clients_per_round = 2;
  c.rounds.min_clients = 2;
  Build(c);
  Register({"lora2-a", "lora2-b", "lora2-c", "lora2-d"});
  const std::map<std::string, PollResponse> first = PollAll({"lora2-a", "lora2-b"});
  ASSERT_EQ(engine_->Status().selected, (std::vector<std::string>{"lora2-a", "lora2-b"}));
  uint32_t seed = 1;
  for (const auto& [id, r] : first) {
    ASSERT_EQ(r.kind, PollKind::kTrain) << id;
    ASSERT_TRUE(engine_->SubmitUpdate(Bind(r, Phase::kCollect), MakeUpdate(id, r.task, seed++)).ok()) << id;
  }
  RoundEngineStatus s = engine_->Status();
  EXPECT_EQ(s.training_rounds_done, 1);
  EXPECT_EQ(s.phase, Phase::kIdle) << "round 2 started from the polls of round 1";
  EXPECT_EQ(s.clients_available, 0);
  Poll("lora2-c");
  Poll("lora2-d");
  s = engine_->Status();
  EXPECT_EQ(s.round, 2);
  EXPECT_EQ(s.selected, (std::vector<std::string>{"lora2-c", "lora2-d"}));
}

TEST_F(RoundEngineTest, ConcurrentUploadsCommitTheSameAggregateAndCountEachClientOnce) {
  // Updates are added outside the round lock: uploads from several threads
  // at once, each client's twice, must commit exactly what one thread would.
  Build(Config());
  const std::vector<std::string> ids = {"lora2-a", "lora4-b", "partial-c"};
  Register(ids);
  auto polls = PollAll(ids);
  auto agg = aggregation::MakeAggregator(config_.aggregation, TwoBlockLoraState(), {.min_updates = 2});
  ASSERT_TRUE(agg.ok());
  struct Send {
    Binding binding;
    Update update;
  };
  std::vector<Send> sends;
  uint32_t seed = 11;
  for (const auto& [id, r] : polls) {
    ASSERT_EQ(r.kind, PollKind::kTrain) << id << ": " << r.reason;
    Update u = MakeUpdate(id, r.task, seed++, /*examples=*/3 * seed);
    ASSERT_TRUE((*agg)->Accept(u).ok());
    sends.push_back({Bind(r, Phase::kCollect), u});
    sends.push_back({Bind(r, Phase::kCollect), u});
  }
  auto expected = (*agg)->Finish();
  ASSERT_TRUE(expected.ok());
  std::vector<absl::Status> results(sends.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < sends.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = engine_->SubmitUpdate(sends[i].binding, sends[i].update); });
  }
  for (std::thread& t : threads) t.join();
  std::map<std::string, int> accepted;
  for (size_t i = 0; i < sends.size(); ++i) {
    accepted[sends[i].update.client_id] += results[i].ok();
    // The engine refuses the second copy itself (one in flight, already
    // done, a replayed sequence, or the round committed meanwhile); it never
    // reaches the aggregator, which would refuse it as an invalid second
    // update (InvalidArgument) and mark the client rejected.
    if (!results[i].ok()) {
      EXPECT_TRUE(results[i].code() == absl::StatusCode::kAlreadyExists ||
                  results[i].code() == absl::StatusCode::kFailedPrecondition ||
                  results[i].code() == absl::StatusCode::kAborted)
          << results[i];
    }
  }
  for (const std::string& id : ids) EXPECT_EQ(accepted[id], 1) << id;
  RoundEngineStatus s = engine_->Status();
  ASSERT_EQ(s.round, 2);
  auto parts = store_->ListParticipants(engine_->run_id(), 1);
  ASSERT_TRUE(parts.ok());
  ASSERT_EQ(parts->size(), ids.size());
  for (const ParticipantRecord& p : *parts) {
    EXPECT_EQ(p.status, ParticipantStatus::kUploaded) << p.client_id;
    EXPECT_EQ(p.reason, "") << p.client_id;
  }
  auto model = engine_->GetModel(s.model_version);
  ASSERT_TRUE(model.ok()) << model.status();
  for (const auto& [name, t] : *expected) EXPECT_TRUE(model->state.at(name).Identical(t)) << name;
}

// Holds the built-in aggregator's Accept() of one client's first update
// until the test opens the gate, so that the test acts while that update is being
// summed (outside the round lock).
struct Gate {
  std::string client_id;
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false;
  bool open = false;
};

class GatedAggregator : public aggregation::Aggregator {
 public:
  GatedAggregator(std::unique_ptr<aggregation::Aggregator> inner, Gate* gate)
      : inner_(std::move(inner)), gate_(gate) {}
  absl::Status Accept(const Update& update) override {
    std::unique_lock<std::mutex> lock(gate_->mu);
    if (update.client_id == gate_->client_id && !gate_->entered) {  // its first update only
      gate_->entered = true;
      gate_->cv.notify_all();
      gate_->cv.wait(lock, [&] { return gate_->open; });
    }
    lock.unlock();
    return inner_->Accept(update);
  }
  absl::StatusOr<TensorMap> Finish() override { return inner_->Finish(); }
  const aggregation::AggregationStats& stats() const override { return inner_->stats(); }

 private:
  std::unique_ptr<aggregation::Aggregator> inner_;
  Gate* gate_;
};

TEST_F(RoundEngineTest, AnUpdateBeingSummedIsNotTakenTwiceRevokedOrCutOffByTheDeadline) {
  Gate gate;
  gate.client_id = "lora2-a";
  RoundEngineOptions options;
  options.make_aggregator = [&](const protocols::AggregationOptions& o, const TensorMap& g,
                                const aggregation::RoundContext& ctx)
      -> absl::StatusOr<std::unique_ptr<aggregation::Aggregator>> {
    FEDFM_ASSIGN_OR_RETURN(std::unique_ptr<aggregation::Aggregator> inner, aggregation::MakeAggregator(o, g, ctx));
    return std::make_unique<GatedAggregator>(std::move(inner), &gate);
  };
  Build(Config(), std::move(options));
  const std::vector<std::string> ids = {"lora2-a", "lora4-b", "partial-c"};
  Register(ids);
  auto polls = PollAll(ids);
  for (const auto& [id, r] : polls) ASSERT_EQ(r.kind, PollKind::kTrain) << id << ": " << r.reason;
  const Update held = MakeUpdate("lora2-a", polls["lora2-a"].task, 5);
  absl::Status held_status = absl::UnknownError("not sent");
  std::thread sender([&] { held_status = engine_->SubmitUpdate(Bind(polls["lora2-a"], Phase::kCollect), held); });
  {
    std::unique_lock<std::mutex> lock(gate.mu);
    gate.cv.wait(lock, [&] { return gate.entered; });
  }
  // A second copy while the first is being summed is refused by the engine.
  absl::Status again = engine_->SubmitUpdate(Bind(polls["lora2-a"], Phase::kCollect), held);
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists) << again;
  // The others upload; revoking the client and passing the deadline neither
  // drop its update nor close the round under it.
  ASSERT_TRUE(engine_->SubmitUpdate(Bind(polls["lora4-b"], Phase::kCollect),
                                    MakeUpdate("lora4-b", polls["lora4-b"].task, 6))
                  .ok());
  ASSERT_TRUE(engine_->SubmitUpdate(Bind(polls["partial-c"], Phase::kCollect),
                                    MakeUpdate("partial-c", polls["partial-c"].task, 7))
                  .ok());
  ASSERT_TRUE(engine_->RevokeClient("lora2-a").ok());
  clock_.AdvanceMs(static_cast<int64_t>(config_.rounds.deadline_s * 1000) + 1);
  ASSERT_TRUE(engine_->Tick().ok());
  EXPECT_EQ(engine_->Status().round, 1);
  EXPECT_EQ(engine_->Status().phase, Phase::kCollect);
  {
    std::lock_guard<std::mutex> lock(gate.mu);
    gate.open = true;
  }
  gate.cv.notify_all();
  sender.join();
  EXPECT_TRUE(held_status.ok()) << held_status;
  // The round then commits with all three updates, the held one recorded
  // uploaded.
  RoundEngineStatus s = engine_->Status();
  EXPECT_EQ(s.round, 2);
  auto parts = store_->ListParticipants(engine_->run_id(), 1);
  ASSERT_TRUE(parts.ok()) << parts.status();
  ASSERT_EQ(parts->size(), ids.size());
  for (const ParticipantRecord& p : *parts) {
    EXPECT_EQ(p.status, ParticipantStatus::kUploaded) << p.client_id;
    EXPECT_EQ(p.reason, "") << p.client_id;
  }
}

TEST_F(RoundEngineTest, RefusesBadMessagesWithTheirReasonAndTheRoundGoesOn) {
  protocols::RunConfig c = Config();
  c.rounds.clients_per_round = 4;
  c.coordinator.max_update_bytes = 4096;
  Build(c);
  const std::vector<std::string> ids = {"lora2-a", "lora4-b", "partial-c", "lora4-d"};
  Register(ids);
  Register({"lora2-revoked"});
  auto polls = PollAll(ids);
  for (const auto& [id, r] : polls) ASSERT_EQ(r.kind, PollKind::kTrain) << id;

  // Unknown client.
  Binding unknown = Bind(polls["lora2-a"], Phase::kCollect);
  unknown.client_id = "nobody";
  absl::Status s = engine_->SubmitUpdate(unknown, MakeUpdate("nobody", polls["lora2-a"].task, 1));
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_EQ(engine_->Poll({.client_id = "nobody"}).status().code(), absl::StatusCode::kNotFound);

  // Revoked client.
  ASSERT_TRUE(engine_->RevokeClient("lora2-revoked").ok());
  Binding revoked = Bind(polls["lora2-a"], Phase::kCollect);
  revoked.client_id = "lora2-revoked";
  s = engine_->SubmitUpdate(revoked, MakeUpdate("lora2-revoked", polls["lora2-a"].task, 1));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_EQ(engine_->Poll({.client_id = "lora2-revoked"}).status().code(), absl::StatusCode::kPermissionDenied);

  // Wrong run.
  Binding other_run = Bind(polls["lora2-a"], Phase::kCollect);
  other_run.run_id = "run-elsewhere";
  EXPECT_EQ(engine_->SubmitUpdate(other_run, MakeUpdate("lora2-a", polls["lora2-a"].task, 1)).code(),
            absl::StatusCode::kInvalidArgument);

  // Stale round.
  Binding stale = Bind(polls["lora2-a"], Phase::kCollect);
  stale.round = 0;
  s = engine_->SubmitUpdate(stale, MakeUpdate("lora2-a", polls["lora2-a"].task, 1));
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_NE(std::string(s.message()).find("stale round"), std::string::npos) << s;

  // Wrong phase: SecAgg keys in a plaintext round, an update bound to unmask.
  s = engine_->SubmitKeys(Bind(polls["lora2-a"], Phase::kAdvertiseKeys), {});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(std::string(s.message()).find("wrong phase"), std::string::npos) << s;
  s = engine_->SubmitUpdate(Bind(polls["lora2-a"], Phase::kUnmask), MakeUpdate("lora2-a", polls["lora2-a"].task, 1));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;

  // Replayed sequence number.
  Binding first = Bind(polls["lora2-a"], Phase::kCollect);
  ASSERT_TRUE(engine_->SubmitUpdate(first, MakeUpdate("lora2-a", polls["lora2-a"].task, 1)).ok());
  s = engine_->SubmitUpdate(first, MakeUpdate("lora2-a", polls["lora2-a"].task, 1));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(std::string(s.message()).find("replayed"), std::string::npos) << s;
  // Duplicate (fresh sequence number).
  s = engine_->SubmitUpdate(Bind(polls["lora2-a"], Phase::kCollect), MakeUpdate("lora2-a", polls["lora2-a"].task, 1));
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;

  // NaN.
  Update nan = MakeUpdate("lora4-b", polls["lora4-b"].task, 2);
  nan.delta.FindMutable("head.weight")->mutable_floats()[1] = std::nanf("");
  s = engine_->SubmitUpdate(Bind(polls["lora4-b"], Phase::kCollect), nan);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(std::string(s.message()).find("head.weight"), std::string::npos) << s;

  // Wrong shape.
  Update shape = MakeUpdate("partial-c", polls["partial-c"].task, 3);
  shape.delta.Set("head.weight", Tensor::Zeros(protocols::DType::kF32, {4}));
  s = engine_->SubmitUpdate(Bind(polls["partial-c"], Phase::kCollect), shape);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;

  // Oversized (above max_update_bytes), then a well-formed update from the
  // same client is refused: its part in the round is over.
  Update big = MakeUpdate("lora4-d", polls["lora4-d"].task, 4);
  big.delta.Set("extra", Tensor::Zeros(protocols::DType::kF32, {2048}));
  s = engine_->SubmitUpdate(Bind(polls["lora4-d"], Phase::kCollect), big);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;

  // The round is over once everyone answered; with 1 accepted update and
  // min_clients 2 it fails and is retried (attempt 2).
  RoundEngineStatus st = engine_->Status();
  EXPECT_EQ(st.round, 1);
  EXPECT_NE(st.last_failure.find("attempt 1"), std::string::npos) << st.last_failure;
  EXPECT_NE(st.last_failure.find("only 1 updates accepted"), std::string::npos) << st.last_failure;
  // Attempt 2 starts once the clients ask for work again: their polls
  // during attempt 1 were for attempt 1 (the store keeps only the latest
  // attempt's participants).
  EXPECT_EQ(st.phase, Phase::kIdle);
  EXPECT_EQ(st.clients_available, 0);
  auto again = PollAll(ids);
  EXPECT_EQ(engine_->Status().attempt, 2);
  auto r1 = store_->GetRound(engine_->run_id(), 1);
  ASSERT_TRUE(r1.ok());
  EXPECT_EQ(r1->status, RoundStatus::kStarted);
  EXPECT_EQ(r1->attempt, 2);

  // The next attempt runs and commits with well-behaved clients.
  for (const auto& [id, r] : again) {
    ASSERT_EQ(r.kind, PollKind::kTrain) << id << ": " << r.reason;
    ASSERT_TRUE(engine_->SubmitUpdate(Bind(r, Phase::kCollect), MakeUpdate(id, r.task, 9)).ok()) << id;
  }
  EXPECT_EQ(engine_->Status().round, 2);
  auto committed = store_->GetRound(engine_->run_id(), 1);
  ASSERT_TRUE(committed.ok());
  EXPECT_EQ(committed->status, RoundStatus::kCommitted);
  EXPECT_EQ(committed->attempt, 2);
}

TEST_F(RoundEngineTest, StragglerPastTheDeadlineIsDropped) {
  Build(Config());
  const std::vector<std::string> ids = {"lora2-a", "lora4-b", "partial-c"};
  Register(ids);
  auto polls = PollAll(ids);
  ASSERT_TRUE(engine_->SubmitUpdate(Bind(polls["lora2-a"], Phase::kCollect),
                                    MakeUpdate("lora2-a", polls["lora2-a"].task, 1)).ok());
  ASSERT_TRUE(engine_->SubmitUpdate(Bind(polls["lora4-b"], Phase::kCollect),
                                    MakeUpdate("lora4-b", polls["lora4-b"].task, 2)).ok());
  ASSERT_TRUE(engine_->Tick().ok());
  EXPECT_EQ(engine_->Status().round, 1);  // still waiting for the straggler
  EXPECT_EQ(polls["partial-c"].deadline_ms, clock_.NowMs() + 100'000);
  clock_.AdvanceMs(100'001);
  // Late: the deadline has passed (refused even before the Tick).
  absl::Status late = engine_->SubmitUpdate(Bind(polls["partial-c"], Phase::kCollect),
                                            MakeUpdate("partial-c", polls["partial-c"].task, 3));
  EXPECT_EQ(late.code(), absl::StatusCode::kAborted) << late;
  ASSERT_TRUE(engine_->Tick().ok());
  EXPECT_EQ(engine_->Status().round, 2);
  auto parts = store_->ListParticipants(engine_->run_id(), 1);
  ASSERT_TRUE(parts.ok());
  ASSERT_EQ(parts->size(), 3u);
  EXPECT_EQ((*parts)[2].client_id, "partial-c");
  EXPECT_EQ((*parts)[2].status, ParticipantStatus::kDropped);
  // After the round moved on, the straggler's message is stale.
  late = engine_->SubmitUpdate(Bind(polls["partial-c"], Phase::kCollect),
                               MakeUpdate("partial-c", polls["partial-c"].task, 3));
  EXPECT_EQ(late.code(), absl::StatusCode::kAborted) << late;
}

TEST_F(RoundEngineTest, WaitsForClientsThenSelectsFewerAfterTheSelectionWait) {
  protocols::RunConfig c = Config();
  c.rounds.clients_per_round = 4;
  Build(c);
  Register({"lora2-a", "lora4-b"});
  PollResponse r = Poll("lora2-a");
  EXPECT_EQ(r.kind, PollKind::kWait);
  EXPECT_GT(r.retry_after_ms, 0);
  r = Poll("lora4-b");
  EXPECT_EQ(r.kind, PollKind::kWait);  // 2 of 4 available: wait a while for more
  clock_.AdvanceMs(1001);
  ASSERT_TRUE(engine_->Tick().ok());
  RoundEngineStatus s = engine_->Status();
  EXPECT_EQ(s.phase, Phase::kCollect);
  EXPECT_EQ(s.selected, (std::vector<std::string>{"lora2-a", "lora4-b"}));
}

TEST_F(RoundEngineTest, EvaluationRoundsReportAndTheTargetStopsTheRun) {
  protocols::RunConfig c = Config();
  c.run.rounds = 4;
  c.rounds.eval_every = 1;  // 1 train, 2 eval, 3 train, 4 eval, ...
  c.rounds.target_metric = "eval_loss";
  c.rounds.target_value = 0.5;
  Build(c);
  const std::vector<std::string> ids = {"lora2-a", "lora4-b"};
  Register(ids);
  EXPECT_EQ(engine_->Status().total_rounds, 8);
  auto polls = PollAll(ids);
  for (const auto& [id, r] : polls) {
    ASSERT_FALSE(r.task.evaluate_only);
    ASSERT_TRUE(engine_->SubmitUpdate(Bind(r, Phase::kCollect), MakeUpdate(id, r.task, 7)).ok());
  }
  const std::string v1 = engine_->Status().model_version;
  polls = PollAll(ids);
  double loss = 0.9;
  for (const auto& [id, r] : polls) {
    ASSERT_EQ(r.kind, PollKind::kTrain);
    ASSERT_TRUE(r.task.evaluate_only);
    EXPECT_EQ(r.binding.phase, Phase::kEvaluate);
    // An update in an evaluation round is in the wrong phase.
    EXPECT_EQ(engine_->SubmitUpdate(Bind(r, Phase::kCollect), MakeUpdate(id, r.task, 7)).code(),
              absl::StatusCode::kFailedPrecondition);
    ASSERT_TRUE(engine_->Report(Bind(r, Phase::kEvaluate), {{{"eval_loss", loss}}, 10}).ok());
    loss -= 0.2;
  }
  RoundEngineStatus s = engine_->Status();
  EXPECT_EQ(s.model_version, v1);  // committed unchanged
  EXPECT_EQ(s.training_rounds_done, 1);
  EXPECT_FALSE(s.finished);  // mean eval_loss 0.8 > 0.5
  auto history = engine_->History();
  ASSERT_EQ(history.size(), 2u);
  EXPECT_NEAR(history[1].metrics.at("eval_loss"), 0.8, 1e-12);

  polls = PollAll(ids);
  for (const auto& [id, r] : polls) {
    ASSERT_TRUE(engine_->SubmitUpdate(Bind(r, Phase::kCollect), MakeUpdate(id, r.task, 8)).ok());
  }
  polls = PollAll(ids);
  for (const auto& [id, r] : polls) {
    ASSERT_TRUE(engine_->Report(Bind(r, Phase::kEvaluate), {{{"eval_loss", 0.25}}, 10}).ok());
  }
  s = engine_->Status();
  EXPECT_TRUE(s.finished);
  EXPECT_NE(s.finish_reason.find("eval_loss"), std::string::npos) << s.finish_reason;
  EXPECT_EQ(Poll("lora2-a").kind, PollKind::kStop);
  auto run = store_->GetRun(engine_->run_id());
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->status, RunStatus::kFinished);
}

TEST_F(RoundEngineTest, StopsAfterTheConfiguredRounds) {
  protocols::RunConfig c = Config();
  c.run.rounds = 2;
  Build(c);
  const std::vector<std::string> ids = {"lora2-a", "lora4-b"};
  Register(ids);
  for (int round = 1; round <= 2; ++round) {
    auto polls = PollAll(ids);
    for (const auto& [id, r] : polls) {
      ASSERT_EQ(r.kind, PollKind::kTrain) << round;
      absl::Status st = engine_->SubmitUpdate(Bind(r, Phase::kCollect), MakeUpdate(id, r.task, round));
      ASSERT_TRUE(st.ok()) << st;
    }
  }
  EXPECT_TRUE(engine_->finished());
  PollResponse r = Poll("lora2-a");
  EXPECT_EQ(r.kind, PollKind::kStop);
  EXPECT_NE(r.reason.find("completed 2"), std::string::npos) << r.reason;
}

TEST_F(RoundEngineTest, ProgressivePartialTrainingGrowsK) {
  protocols::RunConfig c = Config();
  c.partial.top_blocks = 1;
  c.partial.progressive_every = 1;
  c.partial.progressive_step = 1;
  c.partial.progressive_max = 2;
  Build(c);
  const std::vector<std::string> ids = {"partial-a", "partial-b"};
  Register(ids);
  std::vector<int> ks;
  for (int round = 1; round <= 3; ++round) {
    auto polls = PollAll(ids);
    ks.push_back(polls["partial-a"].task.top_blocks);
    if (round == 1) EXPECT_EQ(polls["partial-a"].task.coverage.Find("layers.0.q_proj.lora_A"), nullptr);
    if (round == 2) EXPECT_NE(polls["partial-a"].task.coverage.Find("layers.0.q_proj.lora_A"), nullptr);
    for (const auto& [id, r] : polls) {
      absl::Status st = engine_->SubmitUpdate(Bind(r, Phase::kCollect), MakeUpdate(id, r.task, round));
      ASSERT_TRUE(st.ok()) << st;
    }
  }
  EXPECT_EQ(ks, (std::vector<int>{1, 2, 2}));
}

TEST_F(RoundEngineTest, ZerothOrderClientsGetTheRoundsSeedPool) {
  protocols::RunConfig c = Config();
  c.zeroth_order.seed_pool = 6;
  Build(c);
  const std::vector<std::string> ids = {"lora4-a", "zo-b", "zo-c"};
  Register(ids);
  auto polls = PollAll(ids);
  EXPECT_TRUE(polls["lora4-a"].task.seed_pool.empty());
  ASSERT_EQ(polls["zo-b"].task.seed_pool.size(), 6u);
  EXPECT_EQ(polls["zo-b"].task.seed_pool, polls["zo-c"].task.seed_pool);
  // A dense update from a seed-scalar task is the wrong kind.
  Update dense = MakeUpdate("zo-b", polls["lora4-a"].task, 1);
  dense.client_id = "zo-b";
  EXPECT_EQ(engine_->SubmitUpdate(Bind(polls["zo-b"], Phase::kCollect), dense).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(engine_->SubmitUpdate(Bind(polls["lora4-a"], Phase::kCollect),
                                    MakeUpdate("lora4-a", polls["lora4-a"].task, 2)).ok());
  ASSERT_TRUE(engine_->SubmitUpdate(Bind(polls["zo-c"], Phase::kCollect),
                                    MakeUpdate("zo-c", polls["zo-c"].task, 3)).ok());
  EXPECT_EQ(engine_->Status().round, 2);
  auto parts = store_->ListParticipants(engine_->run_id(), 1);
  ASSERT_TRUE(parts.ok());
  EXPECT_EQ((*parts)[2].method, Method::kZerothOrder);
  EXPECT_EQ((*parts)[2].status, ParticipantStatus::kUploaded);
}

TEST_F(RoundEngineTest, SecAggLeavesOutALoneDenseMember) {
  protocols::RunConfig c = Config();
  c.secagg.enabled = true;
  c.zeroth_order.seed_pool = 4;
  Build(c);
  const std::vector<std::string> ids = {"lora2-a", "zo-b", "zo-c"};
  Register(ids);
  auto polls = PollAll(ids);
  EXPECT_EQ(polls["lora2-a"].kind, PollKind::kWait);  // alone in the dense group
  ASSERT_EQ(polls["zo-b"].kind, PollKind::kTrain);
  EXPECT_EQ(polls["zo-b"].task.seed_pool.size(), 4u);
  EXPECT_EQ(polls["zo-b"].task.secagg.num_clients, 2);
  EXPECT_EQ(polls["zo-b"].task.secagg.group, protocols::SecAggTask::Group::kSeedScalars);
}

TEST_F(RoundEngineTest, SecAggMovesALoneSeedScalarMemberToTheDenseGroupAndFillsTheTask) {
  protocols::RunConfig c = Config();
  c.secagg.enabled = true;
  c.zeroth_order.seed_pool = 4;
  Build(c);
  const std::vector<std::string> ids = {"lora2-a", "lora4-b", "zo-c"};
  Register(ids);
  auto polls = PollAll(ids);
  // Alone in the seed-scalar group, zo-c trains with a dense update instead.
  ASSERT_EQ(polls["zo-c"].kind, PollKind::kTrain);
  EXPECT_EQ(polls["zo-c"].task.method, Method::kZerothOrder);
  EXPECT_TRUE(polls["zo-c"].task.seed_pool.empty());
  EXPECT_EQ(polls["zo-c"].task.secagg.group, protocols::SecAggTask::Group::kDense);
  ASSERT_EQ(polls["lora2-a"].kind, PollKind::kTrain);
  const protocols::SecAggTask& s = polls["lora2-a"].task.secagg;
  EXPECT_TRUE(s.enabled);
  EXPECT_EQ(s.group, protocols::SecAggTask::Group::kDense);
  EXPECT_EQ(s.num_clients, 3);
  EXPECT_EQ(s.index, 0u);
  EXPECT_EQ(polls["lora4-b"].task.secagg.index, 1u);
  EXPECT_EQ(polls["zo-c"].task.secagg.index, 2u);
  EXPECT_EQ(s.layout.size(), 5u);
  EXPECT_EQ(s.vector_length, 2 * (24 + 20) + 3);
  EXPECT_EQ(s.weight_unit, 8u);
  EXPECT_EQ(polls["lora2-a"].binding.phase, Phase::kAdvertiseKeys);
  // A plaintext update is refused in a SecAgg round.
  absl::Status st = engine_->SubmitUpdate(Bind(polls["lora2-a"], Phase::kCollect),
                                          MakeUpdate("lora2-a", polls["lora2-a"].task, 1));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  // Neighbour keys are not ready while the advertise phase is open.
  auto keys = engine_->FetchNeighborKeys(Bind(polls["lora2-a"], Phase::kAdvertiseKeys));
  ASSERT_TRUE(keys.ok());
  EXPECT_FALSE(keys->message.has_value());
  EXPECT_GT(keys->retry_after_ms, 0);
}

TEST_F(RoundEngineTest, SelectionIsDeterministicInTheRunSeed) {
  protocols::RunConfig c = Config();
  c.rounds.clients_per_round = 3;
  const std::vector<std::string> ids = {"lora2-a", "lora2-b", "lora2-c", "lora4-d", "lora4-e", "lora4-f"};
  std::vector<std::vector<std::string>> picks;
  for (int engine = 0; engine < 2; ++engine) {
    SetUp();
    Build(c);
    Register(ids);
    PollAll(ids);
    picks.push_back(engine_->Status().selected);
  }
  EXPECT_EQ(picks[0].size(), 3u);
  EXPECT_EQ(picks[0], picks[1]);
}

TEST_F(RoundEngineTest, EnrollmentTokensAndTheClientList) {
  Build(Config());
  auto token = engine_->CreateToken(/*uses=*/1, /*expires_in_ms=*/60'000);
  ASSERT_TRUE(token.ok()) << token.status();
  protocols::DeviceProfile profile;
  profile.name = "rpi5";
  profile.memory_bytes = 8ull << 30;
  profile.methods = {Method::kZerothOrder};
  auto enrolled = engine_->Enroll({.token = *token, .name = "board-1", .profile = profile});
  ASSERT_TRUE(enrolled.ok()) << enrolled.status();
  EXPECT_EQ(enrolled->run_id, engine_->run_id());
  EXPECT_FALSE(enrolled->client_secret.empty());
  // Used up.
  EXPECT_EQ(engine_->Enroll({.token = *token, .name = "board-2"}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(engine_->Enroll({.token = "fedfm_et_bogus", .name = "board-3"}).status().code(),
            absl::StatusCode::kNotFound);
  auto clients = engine_->ListClients();
  ASSERT_TRUE(clients.ok());
  ASSERT_EQ(clients->size(), 1u);
  EXPECT_EQ((*clients)[0].name, "board-1");
  EXPECT_EQ((*clients)[0].profile.memory_bytes, 8ull << 30);
  EXPECT_EQ((*clients)[0].profile.methods, std::vector<Method>{Method::kZerothOrder});
  ASSERT_TRUE(engine_->RevokeClient(enrolled->client_id).ok());
  clients = engine_->ListClients();
  ASSERT_TRUE(clients.ok());
  EXPECT_TRUE((*clients)[0].revoked);
}

TEST_F(RoundEngineTest, DashboardShowsTheEnginesState) {
  Build(Config());
  const std::vector<std::string> ids = {"lora2-a", "lora4-b"};
  Register(ids);
  auto polls = PollAll(ids);
  auto snap = engine_->dashboard().Snapshot(-1);
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->status.run_id, engine_->run_id());
  EXPECT_EQ(snap->status.round, 1);
  EXPECT_EQ(snap->status.total_rounds, 3);
  EXPECT_EQ(snap->status.phase, "train");
  EXPECT_EQ(snap->status.clients_connected, 2);
  EXPECT_EQ(snap->status.clients_enrolled, 2);
  EXPECT_EQ(snap->status.participants[Method::kLora], 2);
  for (const auto& [id, r] : polls) {
    ASSERT_TRUE(engine_->SubmitUpdate(Bind(r, Phase::kCollect), MakeUpdate(id, r.task, 4)).ok());
  }
  snap = engine_->dashboard().Snapshot(-1);
  ASSERT_TRUE(snap.ok());
  ASSERT_EQ(snap->history.size(), 1u);
  EXPECT_GT(snap->history[0].methods[Method::kLora].bytes_up, 0);
  EXPECT_GT(snap->history[0].methods[Method::kLora].bytes_down, 0);
  EXPECT_TRUE(snap->status.last_metrics.contains("train_loss"));
  EXPECT_EQ(snap->status.model_version, engine_->Status().model_version);
}

TEST_F(RoundEngineTest, RefusesConfigsItCannotRun) {
  protocols::RunConfig c = Config();
  c.aggregation.algorithm = "fedsomething";
  auto engine = RoundEngine::Create(c, *store_, clock_, TwoBlockLoraState(), TwoBlockDims(), nullptr);
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument);
  c = Config();
  c.train.method = Method::kZerothOrder;
  c.zeroth_order.seed_pool = 8;
  engine = RoundEngine::Create(c, *store_, clock_, TwoBlockLoraState(), TwoBlockDims(), nullptr);
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument);
  c = Config();
  c.secagg.enabled = true;
  c.secagg.clip = 1e6;
  c.secagg.fraction_bits = 30;
  engine = RoundEngine::Create(c, *store_, clock_, TwoBlockLoraState(), TwoBlockDims(), nullptr);
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fedfm::coordinator
