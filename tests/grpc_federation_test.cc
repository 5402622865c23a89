// The deployed transport in one process: a CoordinatorServer (gRPC service
// over a RoundEngine) on loopback and devices running ClientRuntime over
// GrpcLink, on real time. Mutual TLS with certificates issued at enrollment,
// SecAgg+ rounds (one with a device that dies after its masked input), and
// every kind of refusal with its reason reaching the device: unauthenticated,
// revoked, replayed, NaN, wrong shape, oversized update, oversized message.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "client/grpc_link.h"
#include "client/runtime.h"
#include "client/testing/fake_trainer.h"
#include "coordinator/clock.h"
#include "coordinator/grpc_server.h"
#include "coordinator/round_engine.h"
#include "coordinator/sqlite_store.h"
#include "coordinator/testing/engine_fixture.h"
#include "gtest/gtest.h"
#include "protocols/config/config.h"
#include "protocols/fedfm.grpc.pb.h"
#include "protocols/tls_certs.h"

namespace fedfm {
namespace {

using coordinator::ParticipantStatus;
using protocols::Binding;
using protocols::Phase;
using protocols::Tensor;
using protocols::TensorMap;

// Two blocks with a rank-4 LoRA pair each and a head; 1,030 floats, so an
// update spans several 1 KiB chunks.
//   layers.i.q_proj.lora_A: [r=4, in=64]   layers.i.q_proj.lora_B: [out=64, r=4]
TensorMap Global() { return coordinator::TwoBlockLoraState(/*in=*/64, /*out=*/64, /*head=*/6); }

protocols::ModelDims Dims() {
  return coordinator::TwoBlockDims(/*num_params=*/5000, /*dim=*/64, /*hidden_dim=*/128, /*num_heads=*/4);
}

protocols::RunConfig Config(int clients, int min_clients, bool secagg) {
  protocols::RunConfig c = coordinator::SmallRunConfig(/*seed=*/77, clients);
  c.rounds.min_clients = min_clients;
  c.rounds.deadline_s = 60;
  c.train.learning_rate = 0.2;
  c.secagg.enabled = secagg;
  return c;
}

// A link that forwards to another until its device "dies" (after a
// successful masked-input upload): from then on every call fails as an
// unreachable coordinator would look to a dead device.
class DyingLink final : public client::CoordinatorLink {
 public:
  explicit DyingLink(client::CoordinatorLink& inner) : inner_(inner) {}
  std::atomic<bool> dead{false};

  absl::StatusOr<protocols::EnrollResponse> Enroll(const protocols::EnrollRequest& r) override {
    if (dead) return Gone();
    return inner_.Enroll(r);
  }
  absl::Status UseIdentity(const protocols::EnrollResponse& i) override { return inner_.UseIdentity(i); }
  absl::StatusOr<protocols::PollResponse> Poll(const protocols::PollRequest& r) override {
    if (dead) return Gone();
    return inner_.Poll(r);
  }
  absl::StatusOr<protocols::ModelSnapshot> DownloadModel(const std::string& v) override {
    if (dead) return Gone();
    return inner_.DownloadModel(v);
  }
  absl::Status UploadUpdate(const Binding& b, const protocols::Update& u) override {
    if (dead) return Gone();
    return inner_.UploadUpdate(b, u);
  }
  absl::Status AdvertiseKeys(const Binding& b, const secagg::ClientKeys& k) override {
    if (dead) return Gone();
    return inner_.AdvertiseKeys(b, k);
  }
  absl::StatusOr<client::Routed<secagg::NeighborKeys>> FetchNeighborKeys(const Binding& b) override {
    if (dead) return Gone();
    return inner_.FetchNeighborKeys(b);
  }
  absl::Status ShareKeys(const Binding& b, const secagg::ClientShares& s) override {
    if (dead) return Gone();
    return inner_.ShareKeys(b, s);
  }
  absl::StatusOr<client::Routed<secagg::RoutedShares>> FetchRoutedShares(const Binding& b) override {
    if (dead) return Gone();
    return inner_.FetchRoutedShares(b);
  }
  absl::Status UploadMaskedInput(const Binding& b, const secagg::MaskedInput& m,
                                 const protocols::UploadInfo& i) override {
    if (dead) return Gone();
    absl::Status s = inner_.UploadMaskedInput(b, m, i);
    if (s.ok()) dead = true;
    return s;
  }
  absl::StatusOr<client::Routed<secagg::UnmaskRequest>> FetchUnmaskRequest(const Binding& b) override {
    if (dead) return Gone();
    return inner_.FetchUnmaskRequest(b);
  }
  absl::Status Unmask(const Binding& b, const secagg::UnmaskResponse& r) override {
    if (dead) return Gone();
    return inner_.Unmask(b, r);
  }
  absl::Status Report(const Binding& b, const protocols::EvalReport& r) override {
    if (dead) return Gone();
    return inner_.Report(b, r);
  }

 private:
  static absl::Status Gone() { return absl::UnavailableError("device powered off"); }
  client::CoordinatorLink& inner_;
};

class GrpcFederationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = protocols::tls::CreateCertificateAuthority("fedfm test CA", 1);
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = *ca;
    auto server_cert = protocols::tls::CreateServerCertificate(ca_, {"localhost", "127.0.0.1"}, 1);
    ASSERT_TRUE(server_cert.ok()) << server_cert.status();
    server_cert_ = *server_cert;
    auto store = coordinator::OpenSqliteStore(coordinator::kInMemoryStore);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  void TearDown() override {
    stop_ticking_ = true;
    if (ticker_.joinable()) ticker_.join();
    if (server_) server_->Shutdown(1'000);
  }

  void Start(const protocols::RunConfig& config, coordinator::CoordinatorServiceOptions service = {},
             TensorMap initial = Global()) {
    config_ = config;
    coordinator::RoundEngineOptions o;
    o.method_rule = coordinator::AllLora();
    o.poll_interval_ms = 50;
    o.selection_wait_ms = 300;
    o.secagg_phase_ms = secagg_phase_ms_;
    auto engine = coordinator::RoundEngine::Create(config_, *store_, clock_, std::move(initial), Dims(), nullptr, o);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
    coordinator::CoordinatorServerOptions so;
    so.listen = "127.0.0.1:0";
    so.tls = coordinator::CoordinatorServerOptions::Tls{server_cert_.key_pem, server_cert_.certificate_pem,
                                                        ca_.certificate_pem};
    so.service = std::move(service);
    so.service.ca = ca_;
    so.service.admin_token = "admin-secret";
    if (so.service.chunk_bytes == (int64_t{4} << 20)) so.service.chunk_bytes = 1024;
    auto server = coordinator::CoordinatorServer::Start(so, *engine_, *store_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ticker_ = std::thread([this] {
      while (!stop_ticking_) {
        engine_->Tick().IgnoreError();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
  }

  client::GrpcLinkOptions LinkOptions(bool certificate = true) const {
    client::GrpcLinkOptions o;
    o.target = "127.0.0.1:" + std::to_string(server_->port());
    o.ca_pem = ca_.certificate_pem;
    o.request_certificate = certificate;
    o.call_timeout_ms = 10'000;
    o.chunk_bytes = 1 << 20;  // the coordinator's 1 KiB limit wins
    return o;
  }

  std::unique_ptr<client::GrpcLink> NewLink(bool certificate = true) {
    auto link = client::GrpcLink::Create(LinkOptions(certificate));
    EXPECT_TRUE(link.ok()) << link.status();
    return link.ok() ? *std::move(link) : nullptr;
  }

  TensorMap StateOfRound(int64_t round) {
    auto r = store_->GetRound(engine_->run_id(), round);
    EXPECT_TRUE(r.ok()) << r.status();
    auto m = engine_->GetModel(r->model_version);
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? m->state : TensorMap();
  }

  std::vector<coordinator::ParticipantRecord> Participants(int64_t round) {
    auto parts = store_->ListParticipants(engine_->run_id(), round);
    EXPECT_TRUE(parts.ok()) << parts.status();
    return parts.ok() ? *parts : std::vector<coordinator::ParticipantRecord>{};
  }

  int64_t secagg_phase_ms_ = 20'000;
  protocols::tls::KeyAndCertificate ca_;
  protocols::tls::KeyAndCertificate server_cert_;
  protocols::RunConfig config_;
  coordinator::SystemClock clock_;
  std::unique_ptr<coordinator::Store> store_;
  std::unique_ptr<coordinator::RoundEngine> engine_;
  std::unique_ptr<coordinator::CoordinatorServer> server_;
  std::atomic<bool> stop_ticking_{false};
  std::thread ticker_;
};

struct Device {
  std::unique_ptr<client::GrpcLink> grpc;
  std::unique_ptr<DyingLink> dying;
  std::unique_ptr<client::FakeTrainer> trainer;
  std::unique_ptr<client::ClientRuntime> runtime;
  absl::Status result;
  std::thread thread;
};

client::ClientRuntimeOptions RuntimeOptions(const std::string& token, int i) {
  client::ClientRuntimeOptions o;
  o.token = token;
  o.name = "device-" + std::to_string(i);
  o.profile.methods = {protocols::Method::kLora};
  o.backoff_initial_ms = 50;
  o.backoff_max_ms = 500;
  o.max_poll_wait_ms = 200;
  o.jitter_seed = i;
  o.dp_seed = 1;
  return o;
}

TEST_F(GrpcFederationTest, MutualTlsSecAggRoundsLowerTheLoss) {
  constexpr int kClients = 4;
  Start(Config(kClients, /*min_clients=*/3, /*secagg=*/true));
  auto token = engine_->CreateToken(kClients, 3'600'000);
  ASSERT_TRUE(token.ok());
  client::Dataset data;
  client::FakeTrainerOptions fo;
  fo.target_seed = 11;
  std::vector<std::unique_ptr<Device>> devices;
  for (int i = 0; i < kClients; ++i) {
    auto d = std::make_unique<Device>();
    d->grpc = NewLink();
    ASSERT_NE(d->grpc, nullptr);
    d->trainer = std::make_unique<client::FakeTrainer>(fo);
    d->runtime = std::make_unique<client::ClientRuntime>(*d->grpc, *d->trainer, data, client::SystemClientEnv(),
                                                         RuntimeOptions(*token, i));
    devices.push_back(std::move(d));
  }
  for (auto& d : devices) d->thread = std::thread([&d = *d] { d.result = d.runtime->Run(); });
  for (auto& d : devices) d->thread.join();
  for (auto& d : devices) EXPECT_TRUE(d->result.ok()) << d->result;

  ASSERT_TRUE(engine_->finished()) << engine_->Status().last_failure;
  EXPECT_EQ(engine_->Status().training_rounds_done, 3);
  for (int64_t round = 1; round <= 3; ++round) {
    std::vector<coordinator::ParticipantRecord> parts = Participants(round);
    ASSERT_EQ(parts.size(), static_cast<size_t>(kClients)) << round;
    for (const auto& p : parts) EXPECT_EQ(p.status, ParticipantStatus::kUploaded) << p.client_id << ": " << p.reason;
  }
  // Every device went mutual TLS with a certificate naming its client id.
  for (auto& d : devices) {
    ASSERT_TRUE(d->grpc->certificate().has_value());
    auto cn = protocols::tls::CertificateCommonName(d->grpc->certificate()->certificate_pem);
    ASSERT_TRUE(cn.ok());
    EXPECT_EQ(*cn, d->runtime->identity()->client_id);
    EXPECT_GT(d->grpc->bytes_up(), 3u * 4 * 1030);  // three masked inputs of >= 4 bytes per value
  }
  client::FakeTrainer judge(fo);
  const double before = judge.Loss(Global());
  const double after = judge.Loss(StateOfRound(3));
  EXPECT_LT(after, 0.7 * before) << before << " -> " << after;
  coordinator::CoordinatorServiceStats stats = server_->stats();
  EXPECT_EQ(stats.uploads_accepted, 3 * kClients);
  EXPECT_EQ(stats.uploads_refused, 0);
}

TEST_F(GrpcFederationTest, SecAggRecoversWhenADeviceDiesAfterItsMaskedInput) {
  constexpr int kClients = 5;
  protocols::RunConfig c = Config(kClients, /*min_clients=*/3, /*secagg=*/true);
  c.run.rounds = 1;
  secagg_phase_ms_ = 3'000;  // the dead device's unmask answer is awaited this long
  Start(c);
  auto token = engine_->CreateToken(kClients, 3'600'000);
  ASSERT_TRUE(token.ok());
  client::Dataset data;
  std::vector<std::unique_ptr<Device>> devices;
  for (int i = 0; i < kClients; ++i) {
    auto d = std::make_unique<Device>();
    d->grpc = NewLink();
    d->dying = std::make_unique<DyingLink>(*d->grpc);
    d->trainer = std::make_unique<client::FakeTrainer>();
    client::ClientRuntimeOptions o = RuntimeOptions(*token, i);
    if (i == 2) o.max_consecutive_failures = 3;
    client::CoordinatorLink& link = i == 2 ? static_cast<client::CoordinatorLink&>(*d->dying) : *d->grpc;
    d->runtime = std::make_unique<client::ClientRuntime>(link, *d->trainer, data, client::SystemClientEnv(), o);
    devices.push_back(std::move(d));
  }
  for (auto& d : devices) d->thread = std::thread([&d = *d] { d.result = d.runtime->Run(); });
  for (auto& d : devices) d->thread.join();
  ASSERT_TRUE(devices[2]->dying->dead);
  EXPECT_FALSE(devices[2]->result.ok());  // it gave up after its link failures
  ASSERT_TRUE(engine_->finished()) << engine_->Status().last_failure;
  std::vector<coordinator::ParticipantRecord> parts = Participants(1);
  ASSERT_EQ(parts.size(), static_cast<size_t>(kClients));
  // The dead device's masked input was included: its self mask was removed
  // with its neighbours' shares, so every input counts.
  for (const auto& p : parts) EXPECT_EQ(p.status, ParticipantStatus::kUploaded) << p.client_id << ": " << p.reason;
  const TensorMap before = Global();
  const TensorMap after = StateOfRound(1);
  double moved = 0;
  for (const auto& [name, t] : before) {
    std::vector<float> x = t.ToFloat32(), y = after.at(name).ToFloat32();
    for (size_t i = 0; i < x.size(); ++i) moved = std::max(moved, std::abs(static_cast<double>(x[i]) - y[i]));
    for (float v : y) ASSERT_TRUE(std::isfinite(v));
  }
  EXPECT_GT(moved, 1e-2);
  EXPECT_LT(moved, 1.0);  // a bad unmask would leave values of order 2^32 / 2^16
}

// Refusals, each with its reason at the device; the round goes on.
TEST_F(GrpcFederationTest, RefusalsReachTheClientAndTheRoundGoesOn) {
  constexpr int kClients = 5;
  protocols::RunConfig c = Config(kClients, /*min_clients=*/1, /*secagg=*/false);
  c.run.rounds = 1;
  c.coordinator.max_update_bytes = 6'000;
  coordinator::CoordinatorServiceOptions so;
  so.max_update_bytes = c.coordinator.max_update_bytes;
  Start(c, so);
  auto token = engine_->CreateToken(kClients, 3'600'000);
  ASSERT_TRUE(token.ok());

  // Enrolled with HMAC secrets only (TLS without client certificates).
  std::vector<std::unique_ptr<client::GrpcLink>> links;
  std::vector<protocols::EnrollResponse> ids;
  for (int i = 0; i < kClients; ++i) {
    links.push_back(NewLink(/*certificate=*/false));
    auto r = links.back()->Enroll({*token, "d" + std::to_string(i), {}});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(links.back()->certificate().has_value());
    ids.push_back(*r);
  }
  // Every device polls until the round has selected it.
  std::vector<protocols::PollResponse> tasks(kClients);
  for (int attempt = 0; attempt < 100; ++attempt) {
    bool all = true;
    for (int i = 0; i < kClients; ++i) {
      if (tasks[i].kind == protocols::PollKind::kTrain) continue;
      auto p = links[i]->Poll({ids[i].client_id, ""});
      ASSERT_TRUE(p.ok()) << p.status();
      tasks[i] = *p;
      all = all && p->kind == protocols::PollKind::kTrain;
    }
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (const auto& t : tasks) ASSERT_EQ(t.kind, protocols::PollKind::kTrain);
  auto model = links[0]->DownloadModel(tasks[0].model_version);
  ASSERT_TRUE(model.ok()) << model.status();

  uint64_t sequence = 1'000;
  auto binding = [&](int i) {
    Binding b = tasks[i].binding;
    b.phase = Phase::kCollect;
    b.sequence = ++sequence;
    return b;
  };
  auto good_update = [&](int i) {
    protocols::Update u;
    u.client_id = ids[i].client_id;
    u.num_examples = 8;
    u.coverage = tasks[i].task.coverage;
    for (const auto& tc : u.coverage.tensors) {
      const Tensor& g = model->state.at(tc.name);
      Tensor d = Tensor::Zeros(protocols::DType::kF32, g.shape());
      protocols::ForEachCovered(d, tc, [&](int64_t k) { d.mutable_floats()[k] = 0.01f; });
      u.delta.Set(tc.name, d);
    }
    return u;
  };

  // Unauthenticated: the right client id with a wrong secret, or no MAC at all.
  {
    auto thief = NewLink(false);
    ASSERT_TRUE(thief->UseIdentity({ids[3].client_id, "not the secret", ids[3].run_id}).ok());
    absl::Status s = thief->UploadUpdate(binding(3), good_update(3));
    EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
    EXPECT_NE(s.message().find("bad MAC"), std::string::npos) << s;
    auto unsigned_link = NewLink(false);
    ASSERT_TRUE(unsigned_link->UseIdentity({ids[3].client_id, "", ids[3].run_id}).ok());
    auto p = unsigned_link->Poll({ids[3].client_id, ""});
    EXPECT_EQ(p.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_NE(p.status().message().find("neither a client certificate nor a MAC"), std::string::npos) << p.status();
  }
  // NaN.
  {
    protocols::Update u = good_update(0);
    u.delta.begin()->second.mutable_floats()[0] = std::numeric_limits<float>::quiet_NaN();
    absl::Status s = links[0]->UploadUpdate(binding(0), u);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(u.delta.begin()->first), std::string::npos) << s;  // names the tensor
  }
  // Wrong shape.
  {
    protocols::Update u = good_update(1);
    const std::string name = u.delta.begin()->first;
    u.delta.Set(name, Tensor::FromFloats({2, 2}, std::vector<float>{0.1f, 0.1f, 0.1f, 0.1f}));
    absl::Status s = links[1]->UploadUpdate(binding(1), u);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(name), std::string::npos) << s;
  }
  // Oversized: an update above coordinator.max_update_bytes is refused from
  // its header; the client may still send a proper one.
  {
    protocols::Update u = good_update(2);
    u.delta.Set("layers.0.q_proj.lora_A", Tensor::FromFloats({4, 400}, std::vector<float>(1600, 0.1f)));
    absl::Status s = links[2]->UploadUpdate(binding(2), u);
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
    EXPECT_NE(s.message().find("max_update_bytes"), std::string::npos) << s;
    EXPECT_TRUE(links[2]->UploadUpdate(binding(2), good_update(2)).ok());
  }
  // Oversized message: gRPC refuses a message above chunk_bytes + 1 MiB.
  {
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                       grpc::SslCredentials({.pem_root_certs = ca_.certificate_pem}));
    auto stub = v1::Coordinator::NewStub(channel);
    v1::PollTaskRequest req;
    req.mutable_binding()->set_client_id(ids[0].client_id);
    req.set_have_model_version(std::string(3 << 20, 'x'));
    v1::PollTaskResponse resp;
    grpc::ClientContext context;
    grpc::Status s = stub->PollTask(&context, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  }
  // Replayed: the same accepted upload again.
  {
    const Binding b = binding(3);
    const protocols::Update u = good_update(3);
    ASSERT_TRUE(links[3]->UploadUpdate(b, u).ok());
    absl::Status s = links[3]->UploadUpdate(b, u);
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_NE(s.message().find("replayed"), std::string::npos) << s;
  }
  // Revoked.
  {
    ASSERT_TRUE(engine_->RevokeClient(ids[4].client_id).ok());
    absl::Status s = links[4]->UploadUpdate(binding(4), good_update(4));
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
    EXPECT_NE(s.message().find("revoked"), std::string::npos) << s;
    auto dl = links[4]->DownloadModel(tasks[4].model_version);
    EXPECT_EQ(dl.status().code(), absl::StatusCode::kPermissionDenied) << dl.status();
  }

  // Devices read the run's configuration (to build their trainers as the run says).
  {
    auto toml = links[2]->GetRunConfigToml();
    ASSERT_TRUE(toml.ok()) << toml.status();
    auto parsed = protocols::ParseRunConfig(*toml);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->lora.rank, 4);
    EXPECT_EQ(parsed->coordinator.max_update_bytes, 6'000);
  }

  // The round went on: committed with the two accepted updates, the refused
  // ones recorded with their reasons.
  for (int i = 0; i < 200 && !engine_->finished(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  ASSERT_TRUE(engine_->finished()) << engine_->Status().last_failure;
  int uploaded = 0;
  for (const auto& p : Participants(1)) {
    if (p.client_id == ids[2].client_id || p.client_id == ids[3].client_id) {
      EXPECT_EQ(p.status, ParticipantStatus::kUploaded) << p.client_id;
      ++uploaded;
    } else if (p.client_id == ids[4].client_id) {
      EXPECT_EQ(p.status, ParticipantStatus::kDropped) << p.reason;
    } else {
      EXPECT_EQ(p.status, ParticipantStatus::kRejected) << p.client_id;
      EXPECT_FALSE(p.reason.empty());
    }
  }
  EXPECT_EQ(uploaded, 2);
  EXPECT_GE(server_->stats().uploads_refused, 6);
}

// A download cut by its deadline resumes from the bytes it has: with a
// deadline far shorter than the transfer, the model still arrives whole,
// each byte once.
TEST_F(GrpcFederationTest, DownloadsResumeWhereABrokenStreamStopped) {
  TensorMap big = Global();
  std::vector<float> values(12 << 20);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i % 977) * 1e-3f;
  big.Set("head.weight", Tensor::FromFloats({static_cast<int64_t>(values.size())}, values));
  coordinator::CoordinatorServiceOptions so;
  so.chunk_bytes = 64 << 10;
  Start(Config(2, 1, false), so, big);
  auto identity = engine_->RegisterClient("", "reader", {});
  ASSERT_TRUE(identity.ok());
  client::GrpcLinkOptions o = LinkOptions(false);
  o.call_timeout_ms = 40;
  o.min_stream_bytes_per_s = 1e15;  // every stream gets ~40 ms: 48 MiB would need 1.2 GB/s
  o.download_resume_attempts = 50;
  auto link = client::GrpcLink::Create(o);
  ASSERT_TRUE(link.ok());
  ASSERT_TRUE((*link)->UseIdentity(*identity).ok());
  const std::string version = engine_->Status().model_version;
  auto model = (*link)->DownloadModel(version);
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_NE(model->safetensors, nullptr);
  EXPECT_EQ((*link)->bytes_down(), model->safetensors->size());  // nothing fetched twice
  EXPECT_TRUE(model->state.at("head.weight").Identical(big.at("head.weight")));
  EXPECT_GE((*link)->download_resumptions(), 1);
  // A version the run never had is a refusal, not something to retry.
  auto missing = (*link)->DownloadModel(std::string(64, 'a'));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
}

TEST_F(GrpcFederationTest, AdminRequestsNeedTheAdminToken) {
  Start(Config(2, 1, false));
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                     grpc::SslCredentials({.pem_root_certs = ca_.certificate_pem}));
  auto stub = v1::Coordinator::NewStub(channel);
  v1::CreateTokenRequest req;
  req.mutable_auth()->set_admin_token("guess");
  req.set_uses(1);
  req.set_expires_in_s(60);
  v1::CreateTokenResponse resp;
  {
    grpc::ClientContext context;
    EXPECT_EQ(stub->CreateToken(&context, req, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  req.mutable_auth()->set_admin_token("admin-secret");
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub->CreateToken(&context, req, &resp).ok());
  }
  // The token enrolls exactly one device.
  auto a = NewLink();
  auto enrolled = a->Enroll({resp.token(), "a", {}});
  ASSERT_TRUE(enrolled.ok()) << enrolled.status();
  auto b = NewLink();
  EXPECT_EQ(b->Enroll({resp.token(), "b", {}}).status().code(), absl::StatusCode::kFailedPrecondition);
  // A client without the CA cannot reach a TLS coordinator at all.
  client::GrpcLinkOptions plain = LinkOptions(false);
  plain.ca_pem.reset();
  plain.call_timeout_ms = 2'000;
  auto c = client::GrpcLink::Create(plain);
  ASSERT_TRUE(c.ok());
  absl::Status s = (*c)->Enroll({resp.token(), "c", {}}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
}

}  // namespace
}  // namespace fedfm
