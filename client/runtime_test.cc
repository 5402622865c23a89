// ClientRuntime against a scripted link: the device loop, backoff after
// transport failures, refusals, evaluation tasks and sequence numbers.
// Rounds against a real RoundEngine (plaintext and SecAgg+) are in
// tests/federation_test.cc.
#include "client/runtime.h"

#include <deque>
#include <string>
#include <vector>

#include "client/testing/fake_trainer.h"
#include "gtest/gtest.h"
#include "protocols/safetensors.h"

namespace fedfm::client {
namespace {

using protocols::Binding;
using protocols::Phase;
using protocols::PollKind;
using protocols::PollResponse;
using protocols::Tensor;
using protocols::TensorMap;

TensorMap Global() {
  TensorMap g;
  g.Set("layers.0.q_proj.lora_A", Tensor::FromFloats({2, 3}, std::vector<float>{0.1f, -0.2f, 0.3f, 0.4f, 0.5f, -0.6f}));
  g.Set("head.weight", Tensor::FromFloats({2}, std::vector<float>{1.0f, -1.0f}));
  return g;
}

// Virtual time: SleepMs advances it.
class FakeEnv final : public ClientEnv {
 public:
  int64_t NowMs() override { return now_ms; }
  void SleepMs(int64_t ms) override {
    slept_ms.push_back(ms);
    now_ms += ms;
  }
  int64_t now_ms = 1'000'000;
  std::vector<int64_t> slept_ms;
};

// Answers from a script; records what the runtime sent.
class ScriptedLink final : public CoordinatorLink {
 public:
  absl::StatusOr<protocols::EnrollResponse> Enroll(const protocols::EnrollRequest& request) override {
    if (absl::Status s = Fail(); !s.ok()) return s;
    enrolled_token = request.token;
    return protocols::EnrollResponse{"client-1", "secret", "run-1"};
  }
  absl::Status UseIdentity(const protocols::EnrollResponse& identity) override {
    used_identity = identity.client_id;
    return absl::OkStatus();
  }
  absl::StatusOr<PollResponse> Poll(const protocols::PollRequest& request) override {
    if (absl::Status s = Fail(); !s.ok()) return s;
    polled_with.push_back(request.have_model_version);
    if (!poll_error.ok()) return poll_error;
    if (polls.empty()) return PollResponse{.kind = PollKind::kStop, .reason = "done"};
    PollResponse r = polls.front();
    polls.pop_front();
    return r;
  }
  absl::StatusOr<protocols::ModelSnapshot> DownloadModel(const std::string& version) override {
    if (absl::Status s = Fail(); !s.ok()) return s;
    downloads.push_back(version);
    auto bytes = std::make_shared<std::vector<std::byte>>(protocols::SerializeSafetensors(Global()));
    return protocols::ModelSnapshot{version, Global(), bytes};
  }
  absl::Status UploadUpdate(const Binding& binding, const protocols::Update& update) override {
    if (absl::Status s = Fail(); !s.ok()) return s;
    bindings.push_back(binding);
    if (!upload_error.ok()) return upload_error;
    if (accept_then_fail) {
      accept_then_fail = false;
      uploads.push_back(update);
      already_have_upload = true;
      return absl::UnavailableError("connection reset after the server read the upload");
    }
    if (already_have_upload) return absl::AlreadyExistsError("already sent its collect message");
    uploads.push_back(update);
    return absl::OkStatus();
  }
  absl::Status AdvertiseKeys(const Binding&, const secagg::ClientKeys&) override { return Unexpected(); }
  absl::StatusOr<Routed<secagg::NeighborKeys>> FetchNeighborKeys(const Binding&) override { return Unexpected(); }
  absl::Status ShareKeys(const Binding&, const secagg::ClientShares&) override { return Unexpected(); }
  absl::StatusOr<Routed<secagg::RoutedShares>> FetchRoutedShares(const Binding&) override { return Unexpected(); }
  absl::Status UploadMaskedInput(const Binding&, const secagg::MaskedInput&, const protocols::UploadInfo&) override {
    return Unexpected();
  }
  absl::StatusOr<Routed<secagg::UnmaskRequest>> FetchUnmaskRequest(const Binding&) override { return Unexpected(); }
  absl::Status Unmask(const Binding&, const secagg::UnmaskResponse&) override { return Unexpected(); }
  absl::Status Report(const Binding& binding, const protocols::EvalReport& report) override {
    if (absl::Status s = Fail(); !s.ok()) return s;
    bindings.push_back(binding);
    reports.push_back(report);
    return absl::OkStatus();
  }

  int fail_next = 0;  // transport failures before the next call succeeds
  bool accept_then_fail = false;
  bool already_have_upload = false;
  absl::Status poll_error = absl::OkStatus();
  absl::Status upload_error = absl::OkStatus();
  std::deque<PollResponse> polls;
  std::string enrolled_token, used_identity;
  std::vector<std::string> polled_with, downloads;
  std::vector<Binding> bindings;
  std::vector<protocols::Update> uploads;
  std::vector<protocols::EvalReport> reports;

 private:
  absl::Status Fail() {
    if (fail_next > 0) {
      --fail_next;
      return absl::UnavailableError("connection refused");
    }
    return absl::OkStatus();
  }
  absl::Status Unexpected() { return absl::InternalError("no SecAgg in this script"); }
};

PollResponse TrainTask(int64_t round, bool evaluate_only = false) {
  PollResponse r;
  r.kind = PollKind::kTrain;
  r.binding = {.run_id = "run-1", .round = round, .client_id = "client-1", .phase = Phase::kCollect};
  r.model_version = "v1";
  r.task.round = round;
  r.task.evaluate_only = evaluate_only;
  r.task.local_steps = 2;
  r.task.batch_size = 4;
  r.task.learning_rate = 0.25;
  r.task.round_seed = 77 + round;
  r.task.model_version = "v1";
  r.task.coverage.tensors = {{"layers.0.q_proj.lora_A", 0, 1}, {"head.weight", -1, 0}};
  return r;
}

class ClientRuntimeTest : public ::testing::Test {
 protected:
  ClientRuntimeOptions Options() {
    ClientRuntimeOptions o;
    o.token = "fedfm_et_token";
    o.name = "test-device";
    o.backoff_initial_ms = 100;
    o.backoff_max_ms = 1000;
    o.backoff_multiplier = 2.0;
    o.backoff_jitter = 0.5;
    o.jitter_seed = 9;
    o.sequence_start = 500;
    return o;
  }

  ScriptedLink link_;
  FakeTrainer trainer_;
  Dataset data_;
  FakeEnv env_;
};

TEST_F(ClientRuntimeTest, EnrollsTrainsUploadsAndStops) {
  link_.polls = {PollResponse{.kind = PollKind::kWait, .retry_after_ms = 250}, TrainTask(1)};
  ClientRuntime runtime(link_, trainer_, data_, env_, Options());
  ASSERT_TRUE(runtime.Run().ok());
  EXPECT_TRUE(runtime.stopped());
  EXPECT_EQ(link_.enrolled_token, "fedfm_et_token");
  ASSERT_TRUE(runtime.identity().has_value());
  EXPECT_EQ(runtime.identity()->client_id, "client-1");
  EXPECT_EQ(link_.downloads, std::vector<std::string>{"v1"});
  ASSERT_EQ(link_.uploads.size(), 1u);
  const protocols::Update& u = link_.uploads[0];
  EXPECT_EQ(u.client_id, "client-1");
  EXPECT_EQ(u.num_examples, 8u);
  EXPECT_EQ(u.coverage, TrainTask(1).task.coverage);
  ASSERT_EQ(link_.bindings.size(), 1u);
  EXPECT_EQ(link_.bindings[0].phase, Phase::kCollect);
  EXPECT_EQ(link_.bindings[0].round, 1);
  EXPECT_EQ(link_.bindings[0].client_id, "client-1");
  EXPECT_GT(link_.bindings[0].sequence, 500u);
  // The second poll after the download says which version the device holds.
  EXPECT_EQ(link_.polled_with.back(), "v1");
  // It waited as told.
  EXPECT_NE(std::find(env_.slept_ms.begin(), env_.slept_ms.end(), 250), env_.slept_ms.end());
  EXPECT_EQ(runtime.stats().updates_accepted, 1);
  EXPECT_EQ(runtime.stats().rounds_trained, 1);
  EXPECT_GT(runtime.stats().bytes_up, 0u);
}

TEST_F(ClientRuntimeTest, RetriesWithExponentialBackoffAndJitter) {
  link_.fail_next = 5;  // enrollment fails 5 times, then the device goes on
  link_.polls = {TrainTask(1)};
  ClientRuntime runtime(link_, trainer_, data_, env_, Options());
  std::vector<int64_t> delays;
  for (int i = 0; i < 5; ++i) {
    auto r = runtime.Step();
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->event, StepEvent::kLinkFailure);
    delays.push_back(r->next_in_ms);
  }
  // Base 100 * 2^n, capped at 1000, scaled by a factor in [0.5, 1].
  const int64_t base[] = {100, 200, 400, 800, 1000};
  for (int i = 0; i < 5; ++i) {
    EXPECT_GE(delays[i], base[i] / 2) << i;
    EXPECT_LE(delays[i], base[i]) << i;
  }
  EXPECT_LT(delays[0], delays[3]);
  EXPECT_EQ(runtime.stats().link_failures, 5);
  auto r = runtime.Step();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->event, StepEvent::kEnrolled);
  ASSERT_TRUE(runtime.Run().ok());
  EXPECT_EQ(link_.uploads.size(), 1u);

  // The same jitter seed replays the same delays.
  ScriptedLink again;
  again.fail_next = 5;
  ClientRuntime twin(again, trainer_, data_, env_, Options());
  for (int i = 0; i < 5; ++i) {
    auto step = twin.Step();
    ASSERT_TRUE(step.ok());
    EXPECT_EQ(step->next_in_ms, delays[i]) << i;
  }
}

TEST_F(ClientRuntimeTest, GivesUpAfterMaxConsecutiveFailures) {
  link_.fail_next = 100;
  ClientRuntimeOptions o = Options();
  o.max_consecutive_failures = 3;
  ClientRuntime runtime(link_, trainer_, data_, env_, o);
  absl::Status s = runtime.Run();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(std::string(s.message()).find("4 consecutive failures"), std::string::npos) << s;
  EXPECT_EQ(env_.slept_ms.size(), 3u);
}

TEST_F(ClientRuntimeTest, AResentUploadTheServerAlreadyHasCountsAsDelivered) {
  link_.polls = {TrainTask(1)};
  link_.accept_then_fail = true;
  ClientRuntime runtime(link_, trainer_, data_, env_, Options());
  ASSERT_TRUE(runtime.Run().ok());
  EXPECT_EQ(link_.uploads.size(), 1u);
  EXPECT_EQ(runtime.stats().refusals, 0);
  EXPECT_EQ(runtime.stats().updates_accepted, 1);
  EXPECT_EQ(trainer_.trained(), 1);  // not trained twice
  // The resend carried a fresh sequence number.
  ASSERT_EQ(link_.bindings.size(), 2u);
  EXPECT_GT(link_.bindings[1].sequence, link_.bindings[0].sequence);
}

TEST_F(ClientRuntimeTest, ARefusalAbandonsTheRoundAndPollsAgain) {
  link_.polls = {TrainTask(1)};
  link_.upload_error = absl::AbortedError("late: phase collect of round 1 has closed");
  ClientRuntime runtime(link_, trainer_, data_, env_, Options());
  ASSERT_TRUE(runtime.Run().ok());
  EXPECT_EQ(runtime.stats().refusals, 1);
  EXPECT_NE(runtime.stats().last_refusal.find("late"), std::string::npos) << runtime.stats().last_refusal;
  EXPECT_EQ(runtime.stats().updates_accepted, 0);
}

TEST_F(ClientRuntimeTest, ARevokedDeviceStops) {
  link_.poll_error = absl::PermissionDeniedError("client \"client-1\" is revoked");
  ClientRuntime runtime(link_, trainer_, data_, env_, Options());
  absl::Status s = runtime.Run();
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_TRUE(runtime.stopped());
}

TEST_F(ClientRuntimeTest, EvaluationTasksReport) {
  data_.eval.resize(12);
  link_.polls = {TrainTask(2, /*evaluate_only=*/true)};
  ClientRuntime runtime(link_, trainer_, data_, env_, Options());
  ASSERT_TRUE(runtime.Run().ok());
  EXPECT_TRUE(link_.uploads.empty());
  ASSERT_EQ(link_.reports.size(), 1u);
  EXPECT_EQ(link_.reports[0].num_examples, 12u);
  EXPECT_NEAR(link_.reports[0].metrics.at("eval_loss"), trainer_.Loss(Global()), 1e-12);
  EXPECT_EQ(link_.bindings.back().phase, Phase::kEvaluate);
  EXPECT_EQ(runtime.stats().rounds_evaluated, 1);
}

TEST_F(ClientRuntimeTest, ReusesAnIdentityAndKeepsTheModelAcrossRounds) {
  link_.polls = {TrainTask(1), TrainTask(2)};
  ClientRuntimeOptions o = Options();
  o.identity = protocols::EnrollResponse{"client-1", "secret", "run-1"};
  o.report_after_training = true;
  ClientRuntime runtime(link_, trainer_, data_, env_, o);
  ASSERT_TRUE(runtime.Run().ok());
  EXPECT_EQ(link_.used_identity, "client-1");
  EXPECT_TRUE(link_.enrolled_token.empty());
  EXPECT_EQ(link_.downloads.size(), 1u);  // v1 downloaded once
  EXPECT_EQ(link_.uploads.size(), 2u);
  EXPECT_EQ(link_.reports.size(), 2u);
  // Sequence numbers strictly increase over every message.
  for (size_t i = 1; i < link_.bindings.size(); ++i) {
    EXPECT_GT(link_.bindings[i].sequence, link_.bindings[i - 1].sequence);
  }
  EXPECT_EQ(link_.bindings[1].phase, Phase::kCollect);  // a report in a training round
}

TEST_F(ClientRuntimeTest, RequestStopEndsRun) {
  for (int i = 0; i < 100; ++i) link_.polls.push_back(PollResponse{.kind = PollKind::kWait, .retry_after_ms = 10});
  ClientRuntime runtime(link_, trainer_, data_, env_, Options());
  runtime.RequestStop();
  EXPECT_TRUE(runtime.Run().ok());
  EXPECT_TRUE(link_.polled_with.empty());
}

}  // namespace
}  // namespace fedfm::client
