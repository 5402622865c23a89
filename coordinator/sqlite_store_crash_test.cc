// Crash safety of the SQLite store: a child process commits rounds in a loop
// and is SIGKILLed at pseudo-random instants (fixed seed); after each kill the
// parent reopens the database and checks that every committed round is whole
// (model and optimizer files present with the right bytes, participants and
// metrics complete), that nothing of an uncommitted round is visible, and
// that committed round numbers are contiguous.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/internal/hash.h"
#include "coordinator/internal/sqlite_testing.h"
#include "coordinator/sqlite_store.h"
#include "gtest/gtest.h"

namespace fedfm::coordinator {
namespace {

namespace fs = std::filesystem;

constexpr char kRun[] = "run-crash";
constexpr int kClients = 5;

std::string ClientId(int i) { return "client-" + std::to_string(i); }

// Everything a round commits is a pure function of its number, so the parent
// can check what it finds byte for byte.
std::vector<std::byte> Bytes(uint64_t seed, size_t size) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> out(size);
  for (std::byte& b : out) b = static_cast<std::byte>(rng() & 0xff);
  return out;
}
std::vector<std::byte> ModelOf(int64_t round) { return Bytes(round, 48 * 1024 + (round % 7) * 8192); }
std::vector<std::byte> OptimizerStateOf(int64_t round) {
  return round == 0 ? std::vector<std::byte>() : Bytes(1'000'000 + round, 16 * 1024);
}

std::vector<ParticipantRecord> ParticipantsOf(int64_t round) {
  if (round == 0) return {};
  std::vector<ParticipantRecord> out;
  for (int i = 0; i < kClients; ++i) {
    ParticipantRecord p;
    p.client_id = ClientId(i);
    p.method = i % 3 == 0 ? protocols::Method::kZerothOrder : protocols::Method::kLora;
    p.rank = p.method == protocols::Method::kLora ? 4 << (i % 2) : 0;
    p.status = (round + i) % 4 == 0 ? ParticipantStatus::kDropped : ParticipantStatus::kUploaded;
    p.reason = p.status == ParticipantStatus::kDropped ? "deadline" : "";
    p.num_examples = 10 * round + i;
    p.bytes_up = 1000 * round + i;
    p.bytes_down = 2000 * round + i;
    out.push_back(p);
  }
  return out;
}

std::vector<MetricRecord> MetricsOf(int64_t round) {
  std::vector<MetricRecord> out = {{"eval_loss", 4.0 / (round + 1), ""}, {"round_seconds", 1.5 * round, ""}};
  if (round > 0) {
    for (int i = 0; i < kClients; ++i) out.push_back({"train_loss", 3.0 / (round + i + 1), ClientId(i)});
  }
  // The order ListMetrics returns: round-level first, then by client and name.
  std::sort(out.begin(), out.end(), [](const MetricRecord& a, const MetricRecord& b) {
    return std::tie(a.client_id, a.name) < std::tie(b.client_id, b.name);
  });
  return out;
}

// Rounds 2, 6, 10, ... fail on their first attempt.
bool FailsFirstAttempt(int64_t round) { return round % 4 == 2; }
std::vector<ParticipantRecord> FailedParticipantsOf(int64_t round) {
  std::vector<ParticipantRecord> out = ParticipantsOf(round);
  for (ParticipantRecord& p : out) {
    p.status = ParticipantStatus::kDropped;
    p.reason = "simulated outage";
  }
  return out;
}

// The child: never returns; exits with a code naming the step that failed.
[[noreturn]] void CommitForever(const fs::path& db_path) {
  absl::StatusOr<std::unique_ptr<Store>> opened = OpenSqliteStore(db_path);
  if (!opened.ok()) ::_exit(10);
  Store& store = **opened;
  // Setup may itself have been cut short by an earlier kill.
  if (absl::IsNotFound(store.GetRun(kRun).status())) {
    RunRecord run;
    run.id = kRun;
    run.name = "crash test";
    run.config_toml = "[run]\n";
    if (!store.CreateRun(run).ok()) ::_exit(11);
  }
  for (int i = 0; i < kClients; ++i) {
    if (!absl::IsNotFound(store.GetClient(ClientId(i)).status())) continue;
    ClientRecord c;
    c.id = ClientId(i);
    c.name = "device";
    c.profile_json = "{}";
    c.auth_secret = "key";
    if (!store.AddClient(c).ok()) ::_exit(12);
  }
  int64_t now_ms = 1;
  while (true) {
    absl::StatusOr<std::optional<RoundRecord>> latest = store.LatestCommittedRound(kRun);
    if (!latest.ok()) ::_exit(13);
    const int64_t round = latest->has_value() ? (*latest)->round + 1 : 0;
    absl::StatusOr<RoundRecord> started = store.StartRound(kRun, round, ++now_ms);
    if (!started.ok()) ::_exit(14);
    if (FailsFirstAttempt(round) && started->attempt == 1) {
      RoundFailure failure;
      failure.run_id = kRun;
      failure.round = round;
      failure.failed_at_ms = ++now_ms;
      failure.reason = "simulated outage";
      failure.participants = FailedParticipantsOf(round);
      failure.metrics = {{"eval_loss", 99.0, ""}};
      if (!store.FailRound(failure).ok()) ::_exit(15);
      continue;
    }
    const std::vector<std::byte> model = ModelOf(round);
    const std::vector<std::byte> state = OptimizerStateOf(round);
    RoundCommit commit;
    commit.run_id = kRun;
    commit.round = round;
    commit.committed_at_ms = ++now_ms;
    commit.model = model;
    commit.optimizer_state = state;
    commit.participants = ParticipantsOf(round);
    commit.metrics = MetricsOf(round);
    if (!store.CommitRound(commit).ok()) ::_exit(16);
  }
}

enum class Blob { kModel, kOptimizerState };

// SHA-256 hex of the round's model or optimizer state ("" for none),
// memoised: regenerating every round's bytes after every kill would dominate
// the test's time.
std::string ExpectedSha(int64_t round, Blob blob) {
  static std::map<std::pair<int64_t, Blob>, std::string> cache;
  auto it = cache.find({round, blob});
  if (it == cache.end()) {
    std::vector<std::byte> bytes = blob == Blob::kModel ? ModelOf(round) : OptimizerStateOf(round);
    it = cache.emplace(std::make_pair(round, blob), bytes.empty() ? std::string() : internal::Sha256Hex(bytes))
             .first;
  }
  return it->second;
}

// Checks every invariant; returns the number of committed rounds.
int64_t CheckInvariants(const fs::path& db_path) {
  int64_t committed = 0;
  {
    absl::StatusOr<std::unique_ptr<Store>> opened = OpenSqliteStore(db_path);
    EXPECT_TRUE(opened.ok()) << opened.status();
    if (!opened.ok()) return 0;
    Store& store = **opened;
    absl::StatusOr<std::vector<RoundRecord>> rounds = store.ListRounds(kRun);
    if (absl::IsNotFound(rounds.status())) return 0;  // killed before the run was created
    EXPECT_TRUE(rounds.ok()) << rounds.status();
    if (!rounds.ok()) return 0;

    for (size_t i = 0; i < rounds->size(); ++i) {
      const RoundRecord& r = (*rounds)[i];
      SCOPED_TRACE("round " + std::to_string(r.round));
      EXPECT_EQ(r.round, static_cast<int64_t>(i)) << "round numbers are not contiguous";
      if (r.status != RoundStatus::kCommitted) {
        EXPECT_EQ(i + 1, rounds->size()) << "only the last round may be uncommitted";
        EXPECT_EQ(r.model_version, "");
        absl::StatusOr<std::vector<ParticipantRecord>> participants = store.ListParticipants(kRun, r.round);
        absl::StatusOr<std::vector<MetricRecord>> metrics = store.ListMetrics(kRun, r.round);
        EXPECT_TRUE(participants.ok() && metrics.ok());
        if (r.status == RoundStatus::kStarted) {
          EXPECT_TRUE(participants->empty()) << "a started round shows participants";
          EXPECT_TRUE(metrics->empty()) << "a started round shows metrics";
        } else {
          EXPECT_EQ(*participants, FailedParticipantsOf(r.round));
          EXPECT_EQ(metrics->size(), 1u);
        }
        continue;
      }
      ++committed;
      // LoadModelVersion verifies the file against the recorded SHA-256;
      // the recorded SHA-256 must be that of the bytes the child committed.
      EXPECT_EQ(r.model_version, ExpectedSha(r.round, Blob::kModel));
      absl::StatusOr<ModelVersion> model = store.LoadModelVersion(r.model_version);
      EXPECT_TRUE(model.ok()) << model.status();
      EXPECT_EQ(r.optimizer_state, ExpectedSha(r.round, Blob::kOptimizerState));
      if (!r.optimizer_state.empty()) {
        absl::StatusOr<ModelVersion> state = store.LoadModelVersion(r.optimizer_state);
        EXPECT_TRUE(state.ok()) << state.status();
      }
      std::vector<ParticipantRecord> expected = ParticipantsOf(r.round);
      absl::StatusOr<std::vector<ParticipantRecord>> participants = store.ListParticipants(kRun, r.round);
      EXPECT_TRUE(participants.ok());
      if (participants.ok()) {
        EXPECT_EQ(*participants, expected);
      }
      absl::StatusOr<std::vector<MetricRecord>> metrics = store.ListMetrics(kRun, r.round);
      EXPECT_TRUE(metrics.ok());
      if (metrics.ok()) {
        EXPECT_EQ(*metrics, MetricsOf(r.round));
      }
      // A kill mid-round adds attempts; a first attempt that failed never commits.
      EXPECT_GE(r.attempt, FailsFirstAttempt(r.round) ? 2 : 1) << "attempt count";
    }

    // Files a kill left behind without a row go; every referenced one stays.
    absl::StatusOr<int64_t> removed = store.RemoveOrphanFiles();
    EXPECT_TRUE(removed.ok()) << removed.status();
    std::set<std::string> referenced;
    for (const RoundRecord& r : *rounds) {
      if (!r.model_version.empty()) referenced.insert(r.model_version + ".safetensors");
      if (!r.optimizer_state.empty()) referenced.insert(r.optimizer_state + ".safetensors");
    }
    std::set<std::string> present;
    for (const auto& entry : fs::directory_iterator(fs::path(db_path.string() + ".models"))) {
      present.insert(entry.path().filename().string());
    }
    EXPECT_EQ(present, referenced);
  }
  // SQLite's own view of the file, with the store closed.
  absl::StatusOr<int64_t> bad_pages = internal::QueryInt64ForTesting(
      db_path, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check != 'ok'");
  EXPECT_TRUE(bad_pages.ok() && *bad_pages == 0);
  absl::StatusOr<int64_t> dangling = internal::QueryInt64ForTesting(db_path, "SELECT count(*) FROM pragma_foreign_key_check");
  EXPECT_TRUE(dangling.ok() && *dangling == 0);
  return committed;
}

TEST(SqliteStoreCrashTest, KillNineAtRandomInstantsKeepsWholeRoundsOnly) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("fedfm_store_crash_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path db_path = dir / "coordinator.db";

  std::mt19937_64 rng(20240611);  // fixed: the kill instants are reproducible up to scheduling
  constexpr int kIterations = 48;
  int64_t committed = 0;
  for (int iteration = 0; iteration < kIterations && !HasFailure(); ++iteration) {
    SCOPED_TRACE("iteration " + std::to_string(iteration));
    // Mostly mid-loop kills; every fourth one early (inside open, migration, setup).
    const int64_t delay_us = iteration % 4 == 0 ? static_cast<int64_t>(rng() % 5000)
                                                : 5000 + static_cast<int64_t>(rng() % 150000);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0) << "fork failed";
    if (pid == 0) CommitForever(db_path);
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
    ::kill(pid, SIGKILL);
    int wstatus = 0;
    ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
    if (WIFEXITED(wstatus)) {
      FAIL() << "the committing child stopped by itself with exit code " << WEXITSTATUS(wstatus)
             << " (see the step codes in CommitForever)";
    }
    ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL);
    const int64_t now_committed = CheckInvariants(db_path);
    EXPECT_GE(now_committed, committed) << "committed rounds were lost";
    committed = now_committed;
  }
  // The kills must not all have landed before the first commit.
  EXPECT_GE(committed, 10) << "too few rounds committed for the test to mean anything";
  RecordProperty("committed_rounds", static_cast<int>(committed));
  std::printf("committed rounds after %d kills: %lld\n", kIterations, static_cast<long long>(committed));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace fedfm::coordinator
