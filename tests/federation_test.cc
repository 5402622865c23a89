// The client runtime against the round engine, in process, on virtual time:
// mixed methods (LoRA ranks 2 and 4, partial layers, zeroth-order seed
// scalars) with and without SecAgg+, the committed state checked against a
// plain aggregation of the updates the clients produced; SecAgg+ dropout
// recovery; crash-resume over a file-backed store; reconnect backoff.
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "aggregation/aggregator.h"
#include "client/runtime.h"
#include "client/testing/fake_trainer.h"
#include "coordinator/clock.h"
#include "coordinator/round_engine.h"
#include "coordinator/round_engine_seed_replay.h"
#include "coordinator/sqlite_store.h"
#include "coordinator/testing/engine_fixture.h"
#include "gtest/gtest.h"
#include "tests/engine_link.h"
#include "zeroth_order/seed_pool.h"

namespace fedfm {
namespace {

using coordinator::ManualClock;
using coordinator::ParticipantStatus;
using coordinator::RoundEngine;
using coordinator::Store;
using coordinator::TwoBlockDims;
using coordinator::TwoBlockLoraState;
using protocols::Method;
using protocols::Tensor;
using protocols::TensorMap;
using protocols::Update;

protocols::RunConfig Config(int clients, bool secagg) {
  protocols::RunConfig c = coordinator::SmallRunConfig(/*seed=*/1234, clients);
  c.lora.client_ranks = {2, 4};
  c.partial.top_blocks = 1;
  c.zeroth_order.seed_pool = 8;
  c.zeroth_order.learning_rate = 1.0;
  c.secagg.enabled = secagg;
  return c;
}

// z of one seed over `like`, as the server's replay regenerates it.
absl::StatusOr<TensorMap> Direction(uint64_t seed, const TensorMap& like) {
  const std::vector<double> one = {1.0};
  return zeroth_order::SeedPoolDelta(like, zeroth_order::SeedPool({seed}), one, /*learning_rate=*/-1.0,
                                     zeroth_order::NoiseKind::kGaussian);
}

// FakeTrainer that remembers the updates it produced, by round.
class RecordingTrainer final : public client::Trainer {
 public:
  RecordingTrainer(std::string id, client::FakeTrainerOptions options) : id_(std::move(id)), fake_(options) {}

  absl::StatusOr<Update> Train(const protocols::Task& task, client::TrainableState& state,
                               client::Dataset& data) override {
    absl::StatusOr<Update> u = fake_.Train(task, state, data);
    if (u.ok()) {
      Update copy = *u;
      copy.client_id = id_;
      by_round[task.round] = copy;
    }
    return u;
  }
  absl::StatusOr<protocols::EvalReport> Evaluate(const protocols::Task& task, const client::TrainableState& state,
                                                 client::Dataset& data) override {
    return fake_.Evaluate(task, state, data);
  }
  double Loss(const TensorMap& state) const { return fake_.Loss(state); }

  std::map<int64_t, Update> by_round;

 private:
  std::string id_;
  client::FakeTrainer fake_;
};

class VirtualEnv final : public client::ClientEnv {
 public:
  explicit VirtualEnv(ManualClock& clock) : clock_(clock) {}
  int64_t NowMs() override { return clock_.NowMs(); }
  void SleepMs(int64_t) override {}

 private:
  ManualClock& clock_;
};

struct Device {
  std::string id;
  std::unique_ptr<RecordingTrainer> trainer;
  std::unique_ptr<test_support::EngineLink> link;
  std::unique_ptr<client::ClientRuntime> runtime;
  protocols::EnrollResponse identity;
  int64_t next_ms = 0;
  bool alive = true;
  // When it returns true for a step's result, the device goes silent.
  std::function<bool(const client::StepResult&)> stop_after;
};

class FederationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = coordinator::OpenSqliteStore(coordinator::kInMemoryStore);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  void Build(const protocols::RunConfig& config, const std::string& run_id = "") {
    config_ = config;
    auto replay = coordinator::SeedPoolReplay::FromConfig(config_, TwoBlockLoraState());
    ASSERT_TRUE(replay.ok());
    replay_ = *std::move(replay);
    coordinator::RoundEngineOptions o;
    o.run_id = run_id;
    o.method_rule = coordinator::PinnedMethods();
    o.selection_wait_ms = 2'000;
    o.secagg_phase_ms = 30'000;
    o.poll_interval_ms = 500;
    auto engine = RoundEngine::Create(config_, *store_, clock_, TwoBlockLoraState(), TwoBlockDims(), replay_.get(), o);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
  }

  // Adds devices (registering them unless `registered`).
  void AddDevices(const std::vector<std::string>& ids, bool registered = false) {
    for (const std::string& id : ids) {
      auto d = std::make_unique<Device>();
      d->id = id;
      client::FakeTrainerOptions fo;
      fo.target_seed = 99;
      fo.quality = 1.0;
      fo.direction = Direction;
      d->trainer = std::make_unique<RecordingTrainer>(id, fo);
      d->link = std::make_unique<test_support::EngineLink>(engine_.get());
      if (registered) {
        d->identity = {id, "", engine_->run_id()};
      } else {
        auto r = engine_->RegisterClient(id, id, {});
        ASSERT_TRUE(r.ok()) << r.status();
        d->identity = *r;
      }
      NewRuntime(*d);
      devices_.push_back(std::move(d));
    }
  }

  void NewRuntime(Device& d) {
    client::ClientRuntimeOptions o;
    o.identity = d.identity;
    o.backoff_initial_ms = 200;
    o.jitter_seed = std::hash<std::string>()(d.id);
    o.secagg_seed = std::array<uint8_t, 32>{static_cast<uint8_t>(d.id.size()), 7};
    o.dp_seed = 1;
    d.runtime = std::make_unique<client::ClientRuntime>(*d.link, *d.trainer, data_, env_, o);
    d.next_ms = clock_.NowMs();
  }

  Device& device(const std::string& id) {
    for (auto& d : devices_) {
      if (d->id == id) return *d;
    }
    ADD_FAILURE() << "no device " << id;
    return *devices_.front();
  }

  // Steps the devices and ticks the engine on virtual time until `done`.
  void RunUntil(const std::function<bool()>& done, int max_iterations = 20'000) {
    for (int it = 0; it < max_iterations; ++it) {
      if (done()) return;
      const int64_t now = clock_.NowMs();
      bool stepped = false;
      for (auto& d : devices_) {
        if (!d->alive || d->runtime->stopped() || d->next_ms > now) continue;
        absl::StatusOr<client::StepResult> r = d->runtime->Step();
        ASSERT_TRUE(r.ok()) << d->id << ": " << r.status();
        d->next_ms = now + r->next_in_ms;
        stepped = true;
        if (d->stop_after && d->stop_after(*r)) d->alive = false;
      }
      ASSERT_TRUE(engine_->Tick().ok());
      if (stepped) continue;
      int64_t next = INT64_MAX;
      for (auto& d : devices_) {
        if (d->alive && !d->runtime->stopped()) next = std::min(next, d->next_ms);
      }
      const int64_t deadline = engine_->Status().phase_deadline_ms;
      if (deadline > now) next = std::min(next, deadline);
      if (next == INT64_MAX) next = now + 1000;
      clock_.SetMs(std::max(next, now + 1));
    }
    FAIL() << "did not finish within " << max_iterations << " iterations; status: round "
           << engine_->Status().round << " phase " << protocols::PhaseName(engine_->Status().phase);
  }

  void RunRounds(int64_t through_round) {
    RunUntil([&] { return engine_->finished() || engine_->Status().training_rounds_done >= through_round; });
  }

  // The state round `round` should commit: the updates of its uploaded
  // participants through a plain aggregator, from the state before it.
  TensorMap Predict(int64_t round, const TensorMap& before) {
    auto parts = store_->ListParticipants(engine_->run_id(), round);
    EXPECT_TRUE(parts.ok());
    aggregation::RoundContext ctx;
    ctx.min_updates = 1;
    ctx.seed_pool = zeroth_order::SeedPool::ForRound(config_.run.seed, round, config_.zeroth_order.seed_pool).seeds();
    ctx.seed_replay = replay_.get();
    ctx.dp = &config_.dp;
    auto agg = aggregation::MakeAggregator(config_.aggregation, before, ctx);
    EXPECT_TRUE(agg.ok()) << agg.status();
    for (const coordinator::ParticipantRecord& p : *parts) {
      if (p.status != ParticipantStatus::kUploaded) continue;
      const Update& u = device(p.client_id).trainer->by_round.at(round);
      EXPECT_TRUE((*agg)->Accept(u).ok()) << p.client_id;
    }
    auto next = (*agg)->Finish();
    EXPECT_TRUE(next.ok()) << next.status();
    return next.ok() ? *next : TensorMap();
  }

  TensorMap StateOf(int64_t round) {
    auto r = store_->GetRound(engine_->run_id(), round);
    EXPECT_TRUE(r.ok()) << r.status();
    auto m = engine_->GetModel(r->model_version);
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? m->state : TensorMap();
  }

  // Max |a - b| over every element; also how far `b` moved from `from`.
  static double MaxDiff(const TensorMap& a, const TensorMap& b) {
    double m = 0;
    for (const auto& [name, t] : a) {
      std::vector<float> x = t.ToFloat32(), y = b.at(name).ToFloat32();
      for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(static_cast<double>(x[i]) - y[i]));
    }
    return m;
  }

  // Round `round` had `participants`, all uploaded but `dropped`.
  void ExpectOnlyDropped(int64_t round, const std::string& dropped, size_t participants) {
    auto parts = store_->ListParticipants(engine_->run_id(), round);
    ASSERT_TRUE(parts.ok());
    ASSERT_EQ(parts->size(), participants);
    for (const auto& p : *parts) {
      EXPECT_EQ(p.status, p.client_id == dropped ? ParticipantStatus::kDropped : ParticipantStatus::kUploaded)
          << p.client_id << ": " << p.reason;
    }
  }

  std::vector<ParticipantStatus> Statuses(int64_t round) {
    auto parts = store_->ListParticipants(engine_->run_id(), round);
    EXPECT_TRUE(parts.ok());
    std::vector<ParticipantStatus> out;
    for (const auto& p : *parts) out.push_back(p.status);
    return out;
  }

  protocols::RunConfig config_;
  ManualClock clock_;
  VirtualEnv env_{clock_};
  client::Dataset data_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<coordinator::SeedPoolReplay> replay_;
  std::unique_ptr<RoundEngine> engine_;
  std::vector<std::unique_ptr<Device>> devices_;
};

TEST_F(FederationTest, MixedMethodsPlaintextCommitExactlyTheAggregate) {
  const std::vector<std::string> ids = {"lora2-a", "lora4-b", "partial-c", "zo-d"};
  Build(Config(4, /*secagg=*/false));
  AddDevices(ids);
  RunUntil([&] { return engine_->finished(); });
  ASSERT_TRUE(engine_->finished());
  TensorMap before = TwoBlockLoraState();
  for (int64_t round = 1; round <= 3; ++round) {
    EXPECT_EQ(Statuses(round), std::vector<ParticipantStatus>(4, ParticipantStatus::kUploaded)) << round;
    const TensorMap expected = Predict(round, before);
    const TensorMap got = StateOf(round);
    for (const auto& [name, t] : expected) EXPECT_TRUE(got.at(name).Identical(t)) << "round " << round << " " << name;
    EXPECT_GT(MaxDiff(before, got), 1e-3) << round;
    before = got;
  }
  RunUntil([&] {
    for (auto& d : devices_) {
      if (!d->runtime->stopped()) return false;
    }
    return true;
  });
  // The clients' loss falls round over round.
  const RecordingTrainer& t = *device("lora4-b").trainer;
  EXPECT_LT(t.Loss(before), 0.8 * t.Loss(TwoBlockLoraState()));
  for (auto& d : devices_) EXPECT_TRUE(d->runtime->stopped()) << d->id;
  EXPECT_EQ(device("zo-d").trainer->by_round.at(2).kind, protocols::UpdateKind::kSeedScalars);
  EXPECT_EQ(engine_->History().size(), 3u);
}

TEST_F(FederationTest, MixedMethodsWithSecAggCommitTheAggregateUpToFixedPoint) {
  // Two zeroth-order clients, so the seed-scalar SecAgg group has a pair.
  const std::vector<std::string> ids = {"lora2-a", "lora4-b", "partial-c", "zo-d", "zo-e"};
  Build(Config(5, /*secagg=*/true));
  AddDevices(ids);
  RunUntil([&] { return engine_->finished(); });
  ASSERT_TRUE(engine_->finished());
  TensorMap before = TwoBlockLoraState();
  for (int64_t round = 1; round <= 3; ++round) {
    EXPECT_EQ(Statuses(round), std::vector<ParticipantStatus>(5, ParticipantStatus::kUploaded)) << round;
    const TensorMap expected = Predict(round, before);
    const TensorMap got = StateOf(round);
    // Fixed point: 5 clients' rounding of 2^-17 each, times unit / weight = 1.
    EXPECT_LT(MaxDiff(expected, got), 1e-4) << round;
    EXPECT_GT(MaxDiff(before, got), 1e-2) << round;
    before = got;
  }
  auto snap = engine_->dashboard().Snapshot(-1);
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->history.back().methods[Method::kZerothOrder].participants, 2);
  EXPECT_GT(snap->totals[Method::kZerothOrder].bytes_up, 0);
}

TEST_F(FederationTest, SecAggOnAndOffGiveTheSameAggregate) {
  const std::vector<std::string> ids = {"lora2-a", "lora4-b", "partial-c", "zo-d", "zo-e"};
  std::vector<TensorMap> finals;
  for (bool secagg : {false, true}) {
    SetUp();
    devices_.clear();
    Build(Config(5, secagg));
    AddDevices(ids);
    RunUntil([&] { return engine_->finished(); });
    ASSERT_TRUE(engine_->finished());
    finals.push_back(StateOf(3));
  }
  EXPECT_LT(MaxDiff(finals[0], finals[1]), 2e-4);
  EXPECT_GT(MaxDiff(TwoBlockLoraState(), finals[1]), 1e-2);
}

TEST_F(FederationTest, SecAggRecoversWhenAClientDropsAfterItsMaskedInput) {
  const std::vector<std::string> ids = {"lora2-a", "lora4-b", "lora4-c", "partial-d"};
  protocols::RunConfig c = Config(4, true);
  c.run.rounds = 1;
  Build(c);
  AddDevices(ids);
  device("lora4-c").stop_after = [](const client::StepResult& r) { return r.event == client::StepEvent::kUploaded; };
  RunUntil([&] { return engine_->finished(); });
  ASSERT_TRUE(engine_->finished());
  // Its masked input was summed: it counts, though it never unmasked.
  EXPECT_EQ(Statuses(1), std::vector<ParticipantStatus>(4, ParticipantStatus::kUploaded));
  EXPECT_LT(MaxDiff(Predict(1, TwoBlockLoraState()), StateOf(1)), 1e-4);
}

TEST_F(FederationTest, SecAggRecoversWhenAClientDropsAfterSharingKeys) {
  const std::vector<std::string> ids = {"lora2-a", "lora4-b", "lora4-c", "partial-d"};
  protocols::RunConfig c = Config(4, true);
  c.run.rounds = 1;
  Build(c);
  AddDevices(ids);
  device("lora4-c").stop_after = [](const client::StepResult& r) { return r.detail == "shares sent"; };
  RunUntil([&] { return engine_->finished(); });
  ASSERT_TRUE(engine_->finished());
  ExpectOnlyDropped(1, "lora4-c", ids.size());
  // Its pairwise masks were removed through its neighbours' shares; the sum
  // is exactly the other three clients'.
  EXPECT_LT(MaxDiff(Predict(1, TwoBlockLoraState()), StateOf(1)), 1e-4);
  EXPECT_GT(MaxDiff(TwoBlockLoraState(), StateOf(1)), 1e-2);
}

// The dense and seed-scalar groups are separate SecAgg+ instances: a
// zeroth-order client that goes silent holds up its own group's key phases
// (until secagg_phase_ms), not the dense clients', who train meanwhile.
TEST_F(FederationTest, ASilentSeedScalarClientDoesNotHoldUpTheDenseGroup) {
  const std::vector<std::string> ids = {"lora2-a", "lora4-b", "partial-c", "zo-d", "zo-e", "zo-f"};
  const std::vector<std::string> dense = {"lora2-a", "lora4-b", "partial-c"};
  protocols::RunConfig c = Config(6, true);
  c.run.rounds = 1;
  Build(c);
  AddDevices(ids);
  device("zo-f").stop_after = [](const client::StepResult& r) { return r.event == client::StepEvent::kTaskReceived; };
  const int64_t t0 = clock_.NowMs();
  RunUntil([&] {
    for (const std::string& id : dense) {
      if (!device(id).trainer->by_round.contains(1)) return false;
    }
    return true;
  });
  EXPECT_LT(clock_.NowMs() - t0, 30'000) << "the dense group waited for the seed-scalar group's advertise deadline";
  EXPECT_EQ(engine_->Status().phase, protocols::Phase::kAdvertiseKeys);  // the seed-scalar group's
  EXPECT_FALSE(device("zo-d").trainer->by_round.contains(1));

  RunUntil([&] { return engine_->finished(); });
  ASSERT_TRUE(engine_->finished());
  ExpectOnlyDropped(1, "zo-f", ids.size());
  EXPECT_LT(MaxDiff(Predict(1, TwoBlockLoraState()), StateOf(1)), 1e-4);
  EXPECT_GT(MaxDiff(TwoBlockLoraState(), StateOf(1)), 1e-2);
}

TEST_F(FederationTest, SecAggClientsClipForCentralDp) {
  // Central DP with SecAgg: the server cannot clip a masked input, so the
  // clients clip and every client weighs 1. With sigma = 0 the result is
  // what the server would compute clipping plaintext updates itself.
  const std::vector<std::string> ids = {"lora2-a", "lora4-b", "partial-c", "zo-d", "zo-e"};
  protocols::RunConfig c = Config(5, true);
  c.run.rounds = 1;
  c.dp.enabled = true;
  c.dp.mode = "central";
  c.dp.clip_norm = 0.05;
  c.dp.noise_multiplier = 0.0;
  Build(c);
  AddDevices(ids);
  RunUntil([&] { return engine_->finished(); });
  ASSERT_TRUE(engine_->finished());
  EXPECT_EQ(Statuses(1), std::vector<ParticipantStatus>(5, ParticipantStatus::kUploaded));
  const TensorMap expected = Predict(1, TwoBlockLoraState());
  EXPECT_LT(MaxDiff(expected, StateOf(1)), 1e-4);
  // Clipping mattered: without it the move would be larger.
  protocols::RunConfig plain = c;
  plain.dp.enabled = false;
  config_ = plain;
  EXPECT_GT(MaxDiff(Predict(1, TwoBlockLoraState()), expected), 1e-3);
}

TEST_F(FederationTest, ClientsOnTheirOwnThreads) {
  // The engine called concurrently: every device runs Run() on a thread.
  const std::vector<std::string> ids = {"lora2-a", "lora4-b", "partial-c", "zo-d", "zo-e", "lora2-f"};
  for (bool secagg : {false, true}) {
    SetUp();
    devices_.clear();
    Build(Config(6, secagg));
    AddDevices(ids);
    class ThreadEnv final : public client::ClientEnv {
     public:
      explicit ThreadEnv(ManualClock& clock) : clock_(clock) {}
      int64_t NowMs() override { return clock_.NowMs(); }
      void SleepMs(int64_t ms) override {
        if (ms > 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
      }

     private:
      ManualClock& clock_;
    };
    std::vector<std::unique_ptr<ThreadEnv>> envs;
    std::vector<std::thread> threads;
    std::vector<absl::Status> results(devices_.size());
    for (size_t i = 0; i < devices_.size(); ++i) {
      Device& d = *devices_[i];
      envs.push_back(std::make_unique<ThreadEnv>(clock_));
      client::ClientRuntimeOptions o;
      o.identity = d.identity;
      o.backoff_initial_ms = 1;
      o.secagg_seed = std::array<uint8_t, 32>{static_cast<uint8_t>(i), 3};
      d.runtime = std::make_unique<client::ClientRuntime>(*d.link, *d.trainer, data_, *envs.back(), o);
      threads.emplace_back([&d, &results, i] { results[i] = d.runtime->Run(); });
    }
    for (std::thread& t : threads) t.join();
    for (size_t i = 0; i < results.size(); ++i) EXPECT_TRUE(results[i].ok()) << ids[i] << ": " << results[i];
    ASSERT_TRUE(engine_->finished()) << secagg;
    TensorMap before = TwoBlockLoraState();
    for (int64_t round = 1; round <= 3; ++round) {
      EXPECT_EQ(Statuses(round), std::vector<ParticipantStatus>(6, ParticipantStatus::kUploaded)) << round;
      const TensorMap got = StateOf(round);
      EXPECT_LE(MaxDiff(Predict(round, before), got), secagg ? 1e-4 : 0.0) << round;
      before = got;
    }
  }
}

TEST_F(FederationTest, AStragglerIsDroppedAtTheDeadline) {
  const std::vector<std::string> ids = {"lora2-a", "lora4-b", "partial-c"};
  protocols::RunConfig c = Config(3, false);
  c.run.rounds = 1;
  Build(c);
  AddDevices(ids);
  device("partial-c").stop_after = [](const client::StepResult& r) {
    return r.event == client::StepEvent::kTaskReceived;
  };
  const int64_t start = clock_.NowMs();
  RunUntil([&] { return engine_->finished(); });
  ASSERT_TRUE(engine_->finished());
  EXPECT_GE(clock_.NowMs() - start, 100'000);  // waited for the deadline
  auto parts = store_->ListParticipants(engine_->run_id(), 1);
  ASSERT_TRUE(parts.ok());
  EXPECT_EQ((*parts)[2].client_id, "partial-c");
  EXPECT_EQ((*parts)[2].status, ParticipantStatus::kDropped);
  EXPECT_EQ(MaxDiff(Predict(1, TwoBlockLoraState()), StateOf(1)), 0.0);
}

TEST_F(FederationTest, TheRuntimeRetriesWithBackoffAfterLinkFailures) {
  const std::vector<std::string> ids = {"lora2-a", "lora4-b"};
  protocols::RunConfig c = Config(2, false);
  c.run.rounds = 2;
  Build(c);
  AddDevices(ids);
  device("lora4-b").link->fail_next = 4;
  RunUntil([&] { return engine_->finished(); });
  ASSERT_TRUE(engine_->finished());
  EXPECT_EQ(device("lora4-b").runtime->stats().link_failures, 4);
  EXPECT_GT(device("lora4-b").runtime->stats().backoff_ms_total, 0);
  EXPECT_EQ(Statuses(1), std::vector<ParticipantStatus>(2, ParticipantStatus::kUploaded));
  EXPECT_EQ(Statuses(2), std::vector<ParticipantStatus>(2, ParticipantStatus::kUploaded));
}

TEST_F(FederationTest, ResumesAfterACrashMidRoundWithHistoryIntact) {
  const std::vector<std::string> ids = {"lora2-a", "lora4-b", "partial-c", "zo-d"};
  protocols::RunConfig c = Config(4, false);
  c.run.rounds = 4;
  c.aggregation.algorithm = "fedadam";  // optimizer state must survive too
  c.aggregation.server_lr = 0.05;

  // Reference: the same run without a crash.
  Build(c, "run-reference");
  AddDevices(ids);
  RunUntil([&] { return engine_->finished(); });
  ASSERT_TRUE(engine_->finished());
  const std::string reference = engine_->Status().model_version;
  devices_.clear();
  engine_.reset();

  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / ("fedfm_resume_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  auto opened = coordinator::OpenSqliteStore(dir / "state.db");
  ASSERT_TRUE(opened.ok()) << opened.status();
  store_ = *std::move(opened);
  Build(c, "run-resume");
  AddDevices(ids);
  RunRounds(2);
  ASSERT_EQ(engine_->Status().training_rounds_done, 2);
  // Round 3 starts once the clients ask for work again.
  RunUntil([&] {
    const coordinator::RoundEngineStatus s = engine_->Status();
    return s.round == 3 && s.phase == protocols::Phase::kCollect;
  });
  // Into round 3: two updates in, then the coordinator dies.
  int uploads = 0;
  for (const char* id : {"lora2-a", "lora4-b"}) {
    device(id).stop_after = [&uploads](const client::StepResult& r) {
      return r.event == client::StepEvent::kUploaded && ++uploads > 0;
    };
  }
  device("partial-c").alive = false;
  device("zo-d").alive = false;
  RunUntil([&] { return uploads >= 2; });
  ASSERT_EQ(engine_->Status().round, 3);
  ASSERT_EQ(engine_->Status().attempt, 1);
  engine_.reset();
  store_.reset();

  // Restart: reopen the store from its file, a new engine, the devices
  // reconnect with their identities.
  opened = coordinator::OpenSqliteStore(dir / "state.db");
  ASSERT_TRUE(opened.ok()) << opened.status();
  store_ = *std::move(opened);
  clock_.AdvanceMs(5'000);
  Build(c, "run-resume");
  EXPECT_EQ(engine_->Status().round, 3);
  EXPECT_EQ(engine_->Status().training_rounds_done, 2);
  EXPECT_EQ(engine_->History().size(), 2u);  // rebuilt from the store
  for (auto& d : devices_) {
    d->link->set_engine(engine_.get());
    d->alive = true;
    d->stop_after = nullptr;
    NewRuntime(*d);
  }
  RunUntil([&] { return engine_->finished(); });
  ASSERT_TRUE(engine_->finished());

  auto rounds = store_->ListRounds(engine_->run_id());
  ASSERT_TRUE(rounds.ok());
  ASSERT_EQ(rounds->size(), 5u);  // 0..4
  for (const auto& r : *rounds) EXPECT_EQ(r.status, coordinator::RoundStatus::kCommitted) << r.round;
  EXPECT_EQ((*rounds)[3].attempt, 2);
  EXPECT_EQ((*rounds)[2].attempt, 1);
  EXPECT_EQ(engine_->History().size(), 4u);
  // Nothing applied twice: the same state as the run that never crashed.
  EXPECT_EQ(engine_->Status().model_version, reference);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace fedfm
