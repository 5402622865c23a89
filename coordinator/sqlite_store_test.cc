#include "coordinator/sqlite_store.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/ids.h"
#include "coordinator/internal/hash.h"
#include "coordinator/internal/sqlite_testing.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocols/file_util.h"

namespace fedfm::coordinator {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

#define ASSERT_OK(expr)                                     \
  do {                                                      \
    const auto& fedfm_test_status_ = (expr);                \
    ASSERT_TRUE(fedfm_test_status_.ok()) << StatusOf(fedfm_test_status_); \
  } while (0)

absl::Status StatusOf(const absl::Status& s) { return s; }
template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}
#define EXPECT_CODE(expr, expected) \
  EXPECT_EQ(StatusOf(expr).code(), absl::StatusCode::expected) << StatusOf(expr)

// A fresh directory per test, removed afterwards.
fs::path MakeTempDir() {
  static int counter = 0;
  fs::path dir = fs::path(::testing::TempDir()) /
                 ("fedfm_store_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Deterministic pseudo-random bytes standing in for a safetensors file.
std::vector<std::byte> RandomModel(uint64_t seed, size_t size) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> out(size);
  for (std::byte& b : out) b = static_cast<std::byte>(rng() & 0xff);
  return out;
}

std::string AsString(std::span<const std::byte> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

ClientRecord MakeClient(const std::string& id, int64_t enrolled_at_ms) {
  ClientRecord c;
  c.id = id;
  c.name = "device " + id;
  c.profile_json = R"({"accelerator":"cpu","memory_bytes":8589934592})";
  c.enrolled_at_ms = enrolled_at_ms;
  c.last_seen_ms = enrolled_at_ms;
  c.auth_secret = std::string("\x00\x01secret\xff", 9);  // bytes, NULs included
  return c;
}

RunRecord MakeRun(const std::string& id) {
  RunRecord run;
  run.id = id;
  run.name = "test run " + id;
  run.config_toml = "[run]\nname = \"" + id + "\"\n";
  run.created_at_ms = 1000;
  return run;
}

enum class Backend { kFile, kMemory };
void PrintTo(Backend backend, std::ostream* os) { *os << (backend == Backend::kFile ? "file" : "memory"); }

class SqliteStoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    db_path_ = dir_ / "state" / "coordinator.db";
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }
  void Reopen() {
    store_.reset();
    absl::StatusOr<std::unique_ptr<Store>> store =
        OpenSqliteStore(GetParam() == Backend::kFile ? db_path_ : fs::path(kInMemoryStore));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  fs::path ModelsDir() const { return fs::path(db_path_.string() + ".models"); }

  // A running run with three enrolled clients.
  void SetUpRun() {
    ASSERT_OK(store_->CreateRun(MakeRun("run-a")));
    for (const char* id : {"c1", "c2", "c3"}) ASSERT_OK(store_->AddClient(MakeClient(id, 10)));
  }

  // Round 0: the initial state, no participants.
  RoundRecord CommitInitial(const std::vector<std::byte>& model) {
    EXPECT_TRUE(store_->StartRound("run-a", 0, 100).ok());
    RoundCommit commit;
    commit.run_id = "run-a";
    commit.round = 0;
    commit.committed_at_ms = 200;
    commit.model = model;
    absl::StatusOr<RoundRecord> committed = store_->CommitRound(commit);
    EXPECT_TRUE(committed.ok()) << committed.status();
    return committed.value_or(RoundRecord{});
  }

  fs::path dir_;
  fs::path db_path_;
  std::unique_ptr<Store> store_;
};

INSTANTIATE_TEST_SUITE_P(SqliteStore, SqliteStoreTest, ::testing::Values(Backend::kFile, Backend::kMemory),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return info.param == Backend::kFile ? std::string("File") : std::string("Memory");
                         });

TEST_P(SqliteStoreTest, ClientsRoundTrip) {
  ClientRecord a = MakeClient("client-a", 20);
  a.last_sequence = 7;
  ClientRecord b = MakeClient("client-b", 10);
  ASSERT_OK(store_->AddClient(a));
  ASSERT_OK(store_->AddClient(b));
  absl::StatusOr<ClientRecord> got = store_->GetClient("client-a");
  ASSERT_OK(got);
  EXPECT_EQ(got->id, a.id);
  EXPECT_EQ(got->name, a.name);
  EXPECT_EQ(got->profile_json, a.profile_json);
  EXPECT_EQ(got->enrolled_at_ms, 20);
  EXPECT_EQ(got->auth_secret, a.auth_secret);
  EXPECT_EQ(got->auth_secret.size(), 9u);
  EXPECT_EQ(got->last_sequence, 7u);
  EXPECT_FALSE(got->revoked);

  absl::StatusOr<std::vector<ClientRecord>> all = store_->ListClients();
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].id, "client-b");  // enrolled first
  EXPECT_EQ((*all)[1].id, "client-a");

  absl::Status dup = store_->AddClient(a);
  EXPECT_CODE(dup, kAlreadyExists);
  EXPECT_THAT(dup.message(), HasSubstr("clients"));
  EXPECT_THAT(dup.message(), HasSubstr("client-a"));

  absl::StatusOr<ClientRecord> missing = store_->GetClient("nobody");
  EXPECT_CODE(missing, kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("nobody"));

  ASSERT_OK(store_->RevokeClient("client-a"));
  ASSERT_OK(store_->RevokeClient("client-a"));  // idempotent
  EXPECT_TRUE(store_->GetClient("client-a")->revoked);
  EXPECT_CODE(store_->RevokeClient("nobody"), kNotFound);
  EXPECT_CODE(store_->AddClient(MakeClient("", 1)), kInvalidArgument);
}

TEST_P(SqliteStoreTest, EnrollmentConsumesTokenUsesAtomically) {
  const std::string token = *NewEnrollmentToken();
  EnrollmentTokenRecord record;
  record.token_hash = HashToken(token);
  record.uses_left = 2;
  record.created_at_ms = 1000;
  record.expires_at_ms = 5000;
  ASSERT_OK(store_->AddEnrollmentToken(record));
  EXPECT_CODE(store_->AddEnrollmentToken(record), kAlreadyExists);

  ASSERT_OK(store_->EnrollClient(record.token_hash, 2000, MakeClient("c1", 2000)));
  // A failed enrollment (id taken) must not consume a use.
  absl::Status dup = store_->EnrollClient(record.token_hash, 2000, MakeClient("c1", 2000));
  EXPECT_CODE(dup, kAlreadyExists);
  ASSERT_OK(store_->EnrollClient(record.token_hash, 2100, MakeClient("c2", 2100)));
  absl::Status used_up = store_->EnrollClient(record.token_hash, 2200, MakeClient("c3", 2200));
  EXPECT_CODE(used_up, kFailedPrecondition);
  EXPECT_THAT(used_up.message(), HasSubstr("no use left"));
  // Nothing of the refused enrollment was kept.
  EXPECT_CODE(store_->GetClient("c3"), kNotFound);
  // The stored hash is named by a prefix only.
  EXPECT_THAT(used_up.message(), Not(HasSubstr(record.token_hash)));
  EXPECT_THAT(used_up.message(), HasSubstr(record.token_hash.substr(0, 12)));

  EXPECT_CODE(store_->EnrollClient(HashToken("not a token"), 2000, MakeClient("c4", 0)), kNotFound);

  EnrollmentTokenRecord expiring = record;
  expiring.token_hash = HashToken(*NewEnrollmentToken());
  expiring.expires_at_ms = 3000;
  ASSERT_OK(store_->AddEnrollmentToken(expiring));
  absl::Status expired = store_->EnrollClient(expiring.token_hash, 3000, MakeClient("c5", 3000));
  EXPECT_CODE(expired, kFailedPrecondition);
  EXPECT_THAT(expired.message(), HasSubstr("expired"));
  ASSERT_OK(store_->EnrollClient(expiring.token_hash, 2999, MakeClient("c5", 2999)));

  EnrollmentTokenRecord bad = record;
  bad.token_hash = token;  // the raw token, not its hash
  EXPECT_CODE(store_->AddEnrollmentToken(bad), kInvalidArgument);
  bad.token_hash = HashToken("x");
  bad.uses_left = 0;
  EXPECT_CODE(store_->AddEnrollmentToken(bad), kInvalidArgument);
}

TEST_P(SqliteStoreTest, AcceptSequenceRefusesReplays) {
  ASSERT_OK(store_->AddClient(MakeClient("c1", 10)));
  ASSERT_OK(store_->AcceptSequence("c1", 1, 100));
  ASSERT_OK(store_->AcceptSequence("c1", 5, 200));
  absl::Status replay = store_->AcceptSequence("c1", 5, 300);
  EXPECT_CODE(replay, kFailedPrecondition);
  EXPECT_THAT(replay.message(), HasSubstr("replayed"));
  EXPECT_THAT(replay.message(), HasSubstr("c1"));
  EXPECT_CODE(store_->AcceptSequence("c1", 4, 300), kFailedPrecondition);
  absl::StatusOr<ClientRecord> c = store_->GetClient("c1");
  EXPECT_EQ(c->last_sequence, 5u);
  EXPECT_EQ(c->last_seen_ms, 200);  // refused messages do not count as seen

  const uint64_t max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  ASSERT_OK(store_->AcceptSequence("c1", max, 400));
  EXPECT_CODE(store_->AcceptSequence("c1", max + 1, 400), kInvalidArgument);
  EXPECT_CODE(store_->AcceptSequence("nobody", 1, 400), kNotFound);
  ASSERT_OK(store_->AddClient(MakeClient("c2", 10)));
  ASSERT_OK(store_->RevokeClient("c2"));
  EXPECT_CODE(store_->AcceptSequence("c2", 1, 400), kPermissionDenied);

  if (GetParam() == Backend::kFile) {
    Reopen();
    EXPECT_EQ(store_->GetClient("c1")->last_sequence, max);
    EXPECT_CODE(store_->AcceptSequence("c1", 6, 500), kFailedPrecondition);
  }
}

TEST_P(SqliteStoreTest, RunsRoundTrip) {
  RunRecord a = MakeRun("run-b");
  a.created_at_ms = 2000;
  ASSERT_OK(store_->CreateRun(a));
  ASSERT_OK(store_->CreateRun(MakeRun("run-a")));
  EXPECT_CODE(store_->CreateRun(a), kAlreadyExists);
  absl::StatusOr<RunRecord> got = store_->GetRun("run-b");
  ASSERT_OK(got);
  EXPECT_EQ(got->config_toml, a.config_toml);
  EXPECT_EQ(got->status, RunStatus::kRunning);
  ASSERT_OK(store_->SetRunStatus("run-b", RunStatus::kFinished));
  EXPECT_EQ(store_->GetRun("run-b")->status, RunStatus::kFinished);
  absl::StatusOr<std::vector<RunRecord>> runs = store_->ListRuns();
  ASSERT_OK(runs);
  ASSERT_EQ(runs->size(), 2u);
  EXPECT_EQ((*runs)[0].id, "run-a");
  EXPECT_EQ((*runs)[1].id, "run-b");
  EXPECT_CODE(store_->GetRun("run-z"), kNotFound);
  EXPECT_CODE(store_->SetRunStatus("run-z", RunStatus::kStopped), kNotFound);
}

TEST_P(SqliteStoreTest, RoundsAreContiguousAndCommitEverything) {
  SetUpRun();
  ASSERT_FALSE(HasFailure());
  absl::StatusOr<std::optional<RoundRecord>> none = store_->LatestCommittedRound("run-a");
  ASSERT_OK(none);
  EXPECT_FALSE(none->has_value());
  absl::Status skip = store_->StartRound("run-a", 1, 100).status();
  EXPECT_CODE(skip, kFailedPrecondition);
  EXPECT_THAT(skip.message(), HasSubstr("next round"));
  EXPECT_THAT(skip.message(), HasSubstr("is 0"));

  const std::vector<std::byte> model0 = RandomModel(1, 4096);
  RoundRecord r0 = CommitInitial(model0);
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(r0.status, RoundStatus::kCommitted);
  EXPECT_EQ(r0.model_version, internal::Sha256Hex(model0));
  EXPECT_EQ(r0.optimizer_state, "");
  EXPECT_EQ(r0.committed_at_ms, 200);

  // Round 1: fails once, then commits on its second attempt.
  absl::StatusOr<RoundRecord> started = store_->StartRound("run-a", 1, 300);
  ASSERT_OK(started);
  EXPECT_EQ(started->attempt, 1);
  EXPECT_EQ(started->status, RoundStatus::kStarted);
  RoundFailure failure;
  failure.run_id = "run-a";
  failure.round = 1;
  failure.failed_at_ms = 400;
  failure.reason = "1 update, min_clients is 2";
  failure.participants = {{"c1", protocols::Method::kLora, 8, ParticipantStatus::kUploaded, "", 32, 100, 200},
                          {"c2", protocols::Method::kLora, 8, ParticipantStatus::kDropped, "deadline", 0, 0, 200}};
  failure.metrics = {{"train_loss", 2.5, "c1"}};
  ASSERT_OK(store_->FailRound(failure));
  EXPECT_CODE(store_->FailRound(failure), kFailedPrecondition);
  absl::StatusOr<RoundRecord> failed = store_->GetRound("run-a", 1);
  ASSERT_OK(failed);
  EXPECT_EQ(failed->status, RoundStatus::kFailed);
  EXPECT_EQ(failed->failure_reason, failure.reason);
  EXPECT_EQ(failed->failed_at_ms, 400);
  EXPECT_EQ(store_->ListParticipants("run-a", 1)->size(), 2u);
  EXPECT_EQ((*store_->LatestCommittedRound("run-a"))->round, 0);

  started = store_->StartRound("run-a", 1, 500);
  ASSERT_OK(started);
  EXPECT_EQ(started->attempt, 2);
  EXPECT_EQ(started->failure_reason, "");
  EXPECT_TRUE(store_->ListParticipants("run-a", 1)->empty());  // the failed attempt's rows are gone
  EXPECT_TRUE(store_->ListMetrics("run-a", 1)->empty());

  const std::vector<std::byte> model1 = RandomModel(2, 5000);
  const std::vector<std::byte> moments1 = RandomModel(3, 3000);
  RoundCommit commit;
  commit.run_id = "run-a";
  commit.round = 1;
  commit.committed_at_ms = 600;
  commit.model = model1;
  commit.optimizer_state = moments1;
  commit.participants = {
      {"c3", protocols::Method::kZerothOrder, 0, ParticipantStatus::kUploaded, "", 16, 512, 4096},
      {"c1", protocols::Method::kLora, 8, ParticipantStatus::kUploaded, "", 32, 40000, 4096},
      {"c2", protocols::Method::kPartial, 0, ParticipantStatus::kRejected, "non-finite values", 8, 9000, 4096}};
  commit.metrics = {{"eval_loss", 1.75, ""},
                    {"train_loss", 2.25, "c1"},
                    {"train_loss", std::numeric_limits<double>::quiet_NaN(), "c2"},
                    {"clients", 3, ""}};
  absl::StatusOr<RoundRecord> r1 = store_->CommitRound(commit);
  ASSERT_OK(r1);
  EXPECT_EQ(r1->status, RoundStatus::kCommitted);
  EXPECT_EQ(r1->attempt, 2);
  EXPECT_EQ(r1->model_version, internal::Sha256Hex(model1));
  EXPECT_EQ(r1->optimizer_state, internal::Sha256Hex(moments1));
  EXPECT_CODE(store_->CommitRound(commit), kFailedPrecondition);  // already committed

  absl::StatusOr<std::vector<ParticipantRecord>> participants = store_->ListParticipants("run-a", 1);
  ASSERT_OK(participants);
  ASSERT_EQ(participants->size(), 3u);
  EXPECT_EQ((*participants)[0], commit.participants[1]);  // by client id
  EXPECT_EQ((*participants)[1], commit.participants[2]);
  EXPECT_EQ((*participants)[2], commit.participants[0]);

  absl::StatusOr<std::vector<MetricRecord>> metrics = store_->ListMetrics("run-a", 1);
  ASSERT_OK(metrics);
  ASSERT_EQ(metrics->size(), 4u);
  EXPECT_EQ((*metrics)[0], (MetricRecord{"clients", 3, ""}));  // round-level first, by name
  EXPECT_EQ((*metrics)[1], (MetricRecord{"eval_loss", 1.75, ""}));
  EXPECT_EQ((*metrics)[2], (MetricRecord{"train_loss", 2.25, "c1"}));
  EXPECT_EQ((*metrics)[3].client_id, "c2");
  EXPECT_TRUE(std::isnan((*metrics)[3].value));

  absl::StatusOr<std::optional<RoundRecord>> latest = store_->LatestCommittedRound("run-a");
  ASSERT_OK(latest);
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ((*latest)->round, 1);
  EXPECT_EQ((*latest)->model_version, r1->model_version);

  absl::StatusOr<ModelVersion> loaded = store_->LoadModelVersion(r1->model_version);
  ASSERT_OK(loaded);
  EXPECT_EQ(AsString(loaded->bytes), AsString(model1));
  EXPECT_EQ(loaded->record.kind, BlobKind::kModel);
  EXPECT_EQ(loaded->record.size_bytes, 5000);
  EXPECT_EQ(loaded->record.created_at_ms, 600);
  absl::StatusOr<ModelVersion> state = store_->LoadModelVersion(r1->optimizer_state);
  ASSERT_OK(state);
  EXPECT_EQ(AsString(state->bytes), AsString(moments1));
  EXPECT_EQ(state->record.kind, BlobKind::kOptimizerState);
  if (GetParam() == Backend::kFile) {
    EXPECT_EQ(loaded->record.path, fs::absolute(ModelsDir() / (r1->model_version + ".safetensors")));
    EXPECT_TRUE(fs::exists(loaded->record.path));
  }

  // Round 2 starts; the metric curve holds committed rounds only.
  ASSERT_OK(store_->StartRound("run-a", 2, 700));
  absl::StatusOr<std::vector<std::pair<int64_t, double>>> series = store_->MetricSeries("run-a", "eval_loss");
  ASSERT_OK(series);
  ASSERT_EQ(series->size(), 1u);
  EXPECT_EQ((*series)[0], (std::pair<int64_t, double>(1, 1.75)));

  absl::StatusOr<std::vector<RoundRecord>> rounds = store_->ListRounds("run-a");
  ASSERT_OK(rounds);
  ASSERT_EQ(rounds->size(), 3u);
  EXPECT_EQ((*rounds)[2].status, RoundStatus::kStarted);

  if (GetParam() == Backend::kFile) {
    Reopen();
    latest = store_->LatestCommittedRound("run-a");
    ASSERT_OK(latest);
    EXPECT_EQ((*latest)->model_version, r1->model_version);
    EXPECT_EQ(store_->ListParticipants("run-a", 1)->size(), 3u);
    EXPECT_EQ(AsString(store_->LoadModelVersion(r0.model_version)->bytes), AsString(model0));
  }
}

TEST_P(SqliteStoreTest, RefusedCommitLeavesNothingBehind) {
  SetUpRun();
  CommitInitial(RandomModel(1, 1000));
  ASSERT_FALSE(HasFailure());
  ASSERT_OK(store_->StartRound("run-a", 1, 300));
  const std::vector<std::byte> model = RandomModel(2, 1000);
  RoundCommit commit;
  commit.run_id = "run-a";
  commit.round = 1;
  commit.model = model;
  commit.participants = {{"c1", protocols::Method::kLora, 4, ParticipantStatus::kUploaded, "", 1, 1, 1},
                         {"ghost", protocols::Method::kLora, 4, ParticipantStatus::kUploaded, "", 1, 1, 1}};
  commit.metrics = {{"eval_loss", 1.0, ""}};
  absl::Status ghost = store_->CommitRound(commit).status();
  EXPECT_CODE(ghost, kNotFound);
  EXPECT_THAT(ghost.message(), HasSubstr("ghost"));
  EXPECT_THAT(ghost.message(), HasSubstr("participants"));
  // Rolled back: still started, no participant, metric or model row.
  EXPECT_EQ(store_->GetRound("run-a", 1)->status, RoundStatus::kStarted);
  EXPECT_TRUE(store_->ListParticipants("run-a", 1)->empty());
  EXPECT_TRUE(store_->ListMetrics("run-a", 1)->empty());
  EXPECT_CODE(store_->LoadModelVersion(internal::Sha256Hex(model)), kNotFound);
  // ...and its file, written before the transaction, is an orphan.
  absl::StatusOr<int64_t> removed = store_->RemoveOrphanFiles();
  ASSERT_OK(removed);
  EXPECT_EQ(*removed, 1);

  commit.participants = {{"c1", protocols::Method::kLora, 4, ParticipantStatus::kUploaded, "", 1, 1, 1},
                         {"c1", protocols::Method::kLora, 4, ParticipantStatus::kDropped, "", 1, 1, 1}};
  EXPECT_CODE(store_->CommitRound(commit), kInvalidArgument);
  commit.participants.pop_back();
  commit.metrics = {{"eval_loss", 1.0, ""}, {"eval_loss", 2.0, ""}};
  EXPECT_CODE(store_->CommitRound(commit), kInvalidArgument);
  commit.metrics.pop_back();
  RoundCommit empty = commit;
  empty.model = {};
  EXPECT_CODE(store_->CommitRound(empty), kInvalidArgument);
  RoundCommit unstarted = commit;
  unstarted.round = 2;
  absl::Status never = store_->CommitRound(unstarted).status();
  EXPECT_CODE(never, kFailedPrecondition);
  EXPECT_THAT(never.message(), HasSubstr("round 2"));
  ASSERT_OK(store_->CommitRound(commit));

  ASSERT_OK(store_->SetRunStatus("run-a", RunStatus::kStopped));
  absl::Status stopped = store_->StartRound("run-a", 2, 900).status();
  EXPECT_CODE(stopped, kFailedPrecondition);
  EXPECT_THAT(stopped.message(), HasSubstr("stopped"));
  EXPECT_CODE(store_->StartRound("run-z", 0, 900), kNotFound);
  EXPECT_CODE(store_->StartRound("run-a", -1, 900), kInvalidArgument);
  EXPECT_CODE(store_->LatestCommittedRound("run-z"), kNotFound);
  EXPECT_CODE(store_->GetRound("run-a", 7), kNotFound);
}

TEST_P(SqliteStoreTest, LoadModelVersionRefusesBadNames) {
  EXPECT_CODE(store_->LoadModelVersion("../../etc/passwd"), kInvalidArgument);
  EXPECT_CODE(store_->LoadModelVersion(std::string(64, 'A')), kInvalidArgument);
  absl::Status missing = store_->LoadModelVersion(std::string(64, 'a')).status();
  EXPECT_CODE(missing, kNotFound);
  EXPECT_THAT(missing.message(), HasSubstr("model_versions"));
}

TEST_P(SqliteStoreTest, ConcurrentReplayChecksAcceptEachSequenceOnce) {
  ASSERT_OK(store_->AddClient(MakeClient("c1", 10)));
  constexpr int kThreads = 4;
  constexpr uint64_t kSequences = 40;
  std::vector<std::vector<uint64_t>> accepted(kThreads);
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t seq = 1; seq <= kSequences; ++seq) {
        absl::Status s = store_->AcceptSequence("c1", seq, static_cast<int64_t>(seq));
        if (s.ok()) {
          accepted[t].push_back(seq);
        } else if (s.code() != absl::StatusCode::kFailedPrecondition) {
          ++errors;
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  std::multiset<uint64_t> all;
  for (const auto& v : accepted) all.insert(v.begin(), v.end());
  EXPECT_EQ(std::set<uint64_t>(all.begin(), all.end()).size(), all.size()) << "a sequence was accepted twice";
  EXPECT_EQ(all.count(kSequences), 1u);
  EXPECT_EQ(store_->GetClient("c1")->last_sequence, kSequences);
}

// Model-file damage is reported with the file's path.
class SqliteStoreFileTest : public SqliteStoreTest {};
INSTANTIATE_TEST_SUITE_P(SqliteStore, SqliteStoreFileTest, ::testing::Values(Backend::kFile),
                         [](const ::testing::TestParamInfo<Backend>&) { return std::string("File"); });

TEST_P(SqliteStoreFileTest, CorruptOrMissingModelFileIsAClearError) {
  SetUpRun();
  const std::vector<std::byte> model = RandomModel(9, 2048);
  RoundRecord r0 = CommitInitial(model);
  ASSERT_FALSE(HasFailure());
  const fs::path file = ModelsDir() / (r0.model_version + ".safetensors");
  ASSERT_TRUE(fs::exists(file));

  std::string bytes = AsString(model);
  bytes[1000] ^= 0x01;  // one flipped bit
  ASSERT_OK(protocols::WriteFileAtomic(file, bytes));
  absl::Status corrupt = store_->LoadModelVersion(r0.model_version).status();
  EXPECT_CODE(corrupt, kDataLoss);
  EXPECT_THAT(corrupt.message(), HasSubstr(file.string()));
  EXPECT_THAT(corrupt.message(), HasSubstr("corrupt"));

  ASSERT_OK(protocols::WriteFileAtomic(file, bytes.substr(0, 100)));
  absl::Status truncated = store_->LoadModelVersion(r0.model_version).status();
  EXPECT_CODE(truncated, kDataLoss);
  EXPECT_THAT(truncated.message(), HasSubstr("100 bytes"));

  fs::remove(file);
  absl::Status missing = store_->LoadModelVersion(r0.model_version).status();
  EXPECT_CODE(missing, kNotFound);
  EXPECT_THAT(missing.message(), HasSubstr(file.string()));
  EXPECT_THAT(missing.message(), HasSubstr("missing"));
}

TEST_P(SqliteStoreFileTest, RemoveOrphanFilesKeepsReferencedFiles) {
  SetUpRun();
  RoundRecord r0 = CommitInitial(RandomModel(4, 100));
  ASSERT_FALSE(HasFailure());
  ASSERT_OK(protocols::WriteFileAtomic(ModelsDir() / (std::string(64, 'b') + ".safetensors"), "orphan"));
  ASSERT_OK(protocols::WriteFileAtomic(ModelsDir() / "x.safetensors.tmp.12345", "interrupted write"));
  absl::StatusOr<int64_t> removed = store_->RemoveOrphanFiles();
  ASSERT_OK(removed);
  EXPECT_EQ(*removed, 2);
  EXPECT_EQ(std::distance(fs::directory_iterator(ModelsDir()), fs::directory_iterator()), 1);
  EXPECT_TRUE(store_->LoadModelVersion(r0.model_version).ok());
  EXPECT_EQ(*store_->RemoveOrphanFiles(), 0);
}

// --- Schema versions ----------------------------------------------------------

// Schema version 1 exactly as the first release wrote it: a frozen copy, so
// that an edit to a shipped migration step breaks this test.
constexpr char kSchemaV1[] = R"sql(
CREATE TABLE runs (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  config_toml TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'stopped'))
);
CREATE TABLE clients (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  profile_json TEXT NOT NULL,
  enrolled_at_ms INTEGER NOT NULL,
  last_seen_ms INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0,
  auth_secret BLOB NOT NULL
);
CREATE TABLE enrollment_tokens (
  token_hash TEXT PRIMARY KEY,
  uses_left INTEGER NOT NULL CHECK (uses_left >= 0),
  expires_at_ms INTEGER NOT NULL,
  created_at_ms INTEGER NOT NULL
);
CREATE TABLE model_versions (
  sha256 TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('model', 'optimizer_state')),
  file_name TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  created_at_ms INTEGER NOT NULL
);
CREATE TABLE rounds (
  run_id TEXT NOT NULL REFERENCES runs (id),
  round INTEGER NOT NULL CHECK (round >= 0),
  status TEXT NOT NULL CHECK (status IN ('started', 'committed', 'failed')),
  attempt INTEGER NOT NULL,
  started_at_ms INTEGER NOT NULL,
  committed_at_ms INTEGER NOT NULL DEFAULT 0,
  failed_at_ms INTEGER NOT NULL DEFAULT 0,
  failure_reason TEXT NOT NULL DEFAULT '',
  model_version TEXT REFERENCES model_versions (sha256),
  optimizer_state TEXT REFERENCES model_versions (sha256),
  PRIMARY KEY (run_id, round),
  CHECK (status != 'committed' OR model_version IS NOT NULL)
);
CREATE TABLE participants (
  run_id TEXT NOT NULL,
  round INTEGER NOT NULL,
  client_id TEXT NOT NULL REFERENCES clients (id),
  method TEXT NOT NULL,
  rank INTEGER NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('selected', 'uploaded', 'dropped', 'rejected')),
  reason TEXT NOT NULL,
  bytes_up INTEGER NOT NULL,
  bytes_down INTEGER NOT NULL,
  PRIMARY KEY (run_id, round, client_id),
  FOREIGN KEY (run_id, round) REFERENCES rounds (run_id, round)
);
CREATE TABLE metrics (
  run_id TEXT NOT NULL,
  round INTEGER NOT NULL,
  client_id TEXT NOT NULL,
  name TEXT NOT NULL,
  value REAL,
  PRIMARY KEY (run_id, round, client_id, name),
  FOREIGN KEY (run_id, round) REFERENCES rounds (run_id, round)
);
PRAGMA user_version = 1;
PRAGMA application_id = 1717920877;
)sql";

class SqliteStoreMigrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    db_path_ = dir_ / "coordinator.db";
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
  fs::path db_path_;
};

TEST_F(SqliteStoreMigrationTest, MigratesVersion1ToLatestKeepingData) {
  const std::string model = "version-1 model bytes";
  const std::string sha = internal::Sha256Hex(model);
  fs::create_directories(dir_ / "coordinator.db.models");
  ASSERT_OK(protocols::WriteFileAtomic(dir_ / "coordinator.db.models" / (sha + ".safetensors"), model));
  ASSERT_OK(internal::ExecSqlForTesting(
      db_path_, std::string(kSchemaV1) +
                    "INSERT INTO runs VALUES ('run-1', 'old run', '[run]', 5, 'running');"
                    "INSERT INTO clients VALUES ('c1', 'old device', '{}', 6, 7, 0, x'0102');"
                    "INSERT INTO model_versions VALUES ('" + sha + "', 'model', '" + sha + ".safetensors', " +
                    std::to_string(model.size()) + ", 8);"
                    "INSERT INTO rounds VALUES ('run-1', 0, 'committed', 1, 8, 9, 0, '', '" + sha + "', NULL);"
                    "INSERT INTO participants VALUES ('run-1', 0, 'c1', 'lora', 4, 'uploaded', '', 10, 20);"
                    "INSERT INTO metrics VALUES ('run-1', 0, '', 'eval_loss', 3.5);"));
  ASSERT_EQ(*internal::QueryInt64ForTesting(db_path_, "PRAGMA user_version"), 1);

  absl::StatusOr<std::unique_ptr<Store>> opened = OpenSqliteStore(db_path_);
  ASSERT_OK(opened);
  Store& store = **opened;
  absl::StatusOr<ClientRecord> client = store.GetClient("c1");
  ASSERT_OK(client);
  EXPECT_EQ(client->name, "old device");
  EXPECT_EQ(client->auth_secret, std::string("\x01\x02"));
  EXPECT_EQ(client->last_sequence, 0u);  // added by version 2
  ASSERT_OK(store.AcceptSequence("c1", 1, 50));
  absl::StatusOr<std::vector<ParticipantRecord>> participants = store.ListParticipants("run-1", 0);
  ASSERT_OK(participants);
  ASSERT_EQ(participants->size(), 1u);
  EXPECT_EQ((*participants)[0].num_examples, 0);  // added by version 2
  EXPECT_EQ((*participants)[0].bytes_down, 20);
  absl::StatusOr<std::optional<RoundRecord>> latest = store.LatestCommittedRound("run-1");
  ASSERT_OK(latest);
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ((*latest)->model_version, sha);
  absl::StatusOr<ModelVersion> loaded = store.LoadModelVersion(sha);
  ASSERT_OK(loaded);
  EXPECT_EQ(AsString(loaded->bytes), model);
  EXPECT_EQ(store.MetricSeries("run-1", "eval_loss")->size(), 1u);
  ASSERT_OK(store.StartRound("run-1", 1, 60));
  opened->reset();

  EXPECT_EQ(*internal::QueryInt64ForTesting(db_path_, "PRAGMA user_version"), kSqliteStoreSchemaVersion);
  EXPECT_EQ(*internal::QueryInt64ForTesting(db_path_, "PRAGMA application_id"), 0x6665646d);
  // Reopening a migrated database changes nothing.
  ASSERT_OK(OpenSqliteStore(db_path_));
  EXPECT_EQ(*internal::QueryInt64ForTesting(db_path_, "SELECT count(*) FROM rounds"), 2);
}

TEST_F(SqliteStoreMigrationTest, FreshDatabaseHasLatestSchemaAndWal) {
  ASSERT_OK(OpenSqliteStore(db_path_));
  EXPECT_EQ(*internal::QueryInt64ForTesting(db_path_, "PRAGMA user_version"), kSqliteStoreSchemaVersion);
  EXPECT_EQ(*internal::QueryInt64ForTesting(
                db_path_, "SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'"),
            1);
  EXPECT_TRUE(fs::is_directory(dir_ / "coordinator.db.models"));
}

TEST_F(SqliteStoreMigrationTest, NewerSchemaIsAClearError) {
  ASSERT_OK(OpenSqliteStore(db_path_));
  ASSERT_OK(internal::ExecSqlForTesting(db_path_, "PRAGMA user_version = 99"));
  absl::StatusOr<std::unique_ptr<Store>> opened = OpenSqliteStore(db_path_);
  EXPECT_CODE(opened, kFailedPrecondition);
  EXPECT_THAT(opened.status().message(), HasSubstr("schema version 99"));
  EXPECT_THAT(opened.status().message(), HasSubstr("newer"));
  EXPECT_THAT(opened.status().message(), HasSubstr(db_path_.string()));
}

TEST_F(SqliteStoreMigrationTest, ForeignDatabasesAreRefused) {
  ASSERT_OK(internal::ExecSqlForTesting(db_path_, "CREATE TABLE songs (title TEXT)"));
  absl::StatusOr<std::unique_ptr<Store>> opened = OpenSqliteStore(db_path_);
  EXPECT_CODE(opened, kFailedPrecondition);
  EXPECT_THAT(opened.status().message(), HasSubstr("not a fedfm coordinator database"));

  const fs::path other = dir_ / "other.db";
  ASSERT_OK(internal::ExecSqlForTesting(other, "PRAGMA application_id = 42"));
  EXPECT_CODE(OpenSqliteStore(other), kFailedPrecondition);

  const fs::path junk = dir_ / "junk.db";
  ASSERT_OK(protocols::WriteFileAtomic(junk, std::string(4096, 'j')));
  absl::StatusOr<std::unique_ptr<Store>> junk_store = OpenSqliteStore(junk);
  EXPECT_FALSE(junk_store.ok());
  EXPECT_THAT(junk_store.status().message(), HasSubstr(junk.string()));
}

}  // namespace
}  // namespace fedfm::coordinator
