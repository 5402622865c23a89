#include "protocols/wire.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>

namespace fedfm::protocols::wire {
namespace {

Task RandomTask(uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto i32 = [&] { return static_cast<int>(rng() % 1000) + 1; };
  auto f64 = [&] { return std::uniform_real_distribution<double>(-3, 3)(rng); };
  Task t;
  t.round = static_cast<int64_t>(rng() % 100000);
  t.evaluate_only = rng() % 2;
  t.method = Method::kPartial;
  t.lora_rank = i32();
  t.top_blocks = i32();
  t.partial_full_weights = true;
  t.local_steps = i32();
  t.batch_size = i32();
  t.grad_accumulation = i32();
  t.seq_len = i32();
  t.learning_rate = f64();
  t.weight_decay = f64();
  t.grad_clip = f64();
  t.fedprox_mu = f64();
  t.seed_pool = {rng(), rng(), rng()};
  t.zo_epsilon = f64();
  t.zo_learning_rate = f64();
  t.zo_perturbations = i32();
  t.round_seed = rng();
  t.coverage.tensors = {{"layers.0.attn.q_proj.lora_A", 0, 3}, {"head.weight", -1, 0}};
  t.model_version = "ab12";
  t.dp = {.enabled = true, .mode = "distributed", .clip_norm = f64(), .noise_multiplier = f64(), .delta = 1e-6};
  t.dp_noise_clients = i32();
  t.secagg.enabled = true;
  t.secagg.group = SecAggTask::Group::kSeedScalars;
  t.secagg.round_id = rng();
  t.secagg.index = static_cast<uint32_t>(i32());
  t.secagg.num_clients = i32();
  t.secagg.num_neighbors = i32();
  t.secagg.threshold = 0.75;
  t.secagg.threshold_count = i32();
  t.secagg.vector_length = static_cast<int64_t>(rng() % (int64_t{1} << 40));
  for (auto& b : t.secagg.graph_seed) b = static_cast<uint8_t>(rng());
  t.secagg.clip = f64();
  t.secagg.fraction_bits = 17;
  t.secagg.layout = {"a", "b.c"};
  t.secagg.weight_unit = rng();
  t.secagg.weight_by_examples = false;
  return t;
}

TEST(GrpcWireTest, TaskRoundTripsEveryField) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    Task task = RandomTask(seed);
    v1::Task proto;
    ToProto(task, &proto);
    v1::Task reparsed;
    ASSERT_TRUE(reparsed.ParseFromString(proto.SerializeAsString()));
    absl::StatusOr<Task> back = FromProto(reparsed);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->round, task.round);
    EXPECT_EQ(back->evaluate_only, task.evaluate_only);
    EXPECT_EQ(back->method, task.method);
    EXPECT_EQ(back->lora_rank, task.lora_rank);
    EXPECT_EQ(back->top_blocks, task.top_blocks);
    EXPECT_EQ(back->partial_full_weights, task.partial_full_weights);
    EXPECT_EQ(back->local_steps, task.local_steps);
    EXPECT_EQ(back->batch_size, task.batch_size);
    EXPECT_EQ(back->grad_accumulation, task.grad_accumulation);
    EXPECT_EQ(back->seq_len, task.seq_len);
    EXPECT_EQ(back->learning_rate, task.learning_rate);
    EXPECT_EQ(back->weight_decay, task.weight_decay);
    EXPECT_EQ(back->grad_clip, task.grad_clip);
    EXPECT_EQ(back->fedprox_mu, task.fedprox_mu);
    EXPECT_EQ(back->seed_pool, task.seed_pool);
    EXPECT_EQ(back->zo_epsilon, task.zo_epsilon);
    EXPECT_EQ(back->zo_learning_rate, task.zo_learning_rate);
    EXPECT_EQ(back->zo_perturbations, task.zo_perturbations);
    EXPECT_EQ(back->round_seed, task.round_seed);
    EXPECT_EQ(back->coverage, task.coverage);
    EXPECT_EQ(back->model_version, task.model_version);
    EXPECT_EQ(back->dp.enabled, task.dp.enabled);
    EXPECT_EQ(back->dp.mode, task.dp.mode);
    EXPECT_EQ(back->dp.clip_norm, task.dp.clip_norm);
    EXPECT_EQ(back->dp.noise_multiplier, task.dp.noise_multiplier);
    EXPECT_EQ(back->dp.delta, task.dp.delta);
    EXPECT_EQ(back->dp_noise_clients, task.dp_noise_clients);
    EXPECT_EQ(back->secagg, task.secagg);
  }
}

TEST(GrpcWireTest, PollResponseAndBindingRoundTrip) {
  PollResponse r;
  r.kind = PollKind::kTrain;
  r.binding = {"run-1", 7, "client-9", Phase::kAdvertiseKeys, 12345};
  r.task = RandomTask(9);
  r.model_version = "ff00";
  r.deadline_ms = 1'700'000'123'456;
  r.retry_after_ms = 250;
  r.reason = "because";
  v1::PollTaskResponse proto;
  ToProto(r, &proto);
  absl::StatusOr<PollResponse> back = FromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->kind, r.kind);
  EXPECT_EQ(back->binding, r.binding);
  EXPECT_EQ(back->task.secagg, r.task.secagg);
  EXPECT_EQ(back->model_version, r.model_version);
  EXPECT_EQ(back->deadline_ms, r.deadline_ms);
  EXPECT_EQ(back->retry_after_ms, r.retry_after_ms);
  EXPECT_EQ(back->reason, r.reason);
}

TEST(GrpcWireTest, ProfileAndUpdateHeaderRoundTrip) {
  DeviceProfile p;
  p.name = "edge";
  p.accelerator = "cuda";
  p.memory_bytes = uint64_t{7} << 30;
  p.flops_per_s = 1.5e12;
  p.uplink_bytes_per_s = 1e6;
  p.downlink_bytes_per_s = 2e6;
  p.availability = 0.5;
  p.dropout = 0.1;
  p.methods = {Method::kLora, Method::kZerothOrder};
  v1::DeviceProfile proto;
  ToProto(p, &proto);
  absl::StatusOr<DeviceProfile> back = FromProto(proto);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->name, p.name);
  EXPECT_EQ(back->memory_bytes, p.memory_bytes);
  EXPECT_EQ(back->flops_per_s, p.flops_per_s);
  EXPECT_EQ(back->methods, p.methods);
  EXPECT_EQ(back->dropout, p.dropout);

  Update u;
  u.kind = UpdateKind::kSeedScalars;
  u.num_examples = 33;
  u.seed_scalars = {0.5f, -1.25f, 3.0f};
  u.metrics = {{"train_loss", 2.5}, {"steps", 10}};
  u.peak_memory_bytes = 99;
  v1::UploadHeader header;
  UpdateHeaderToProto(u, &header);
  header.mutable_binding()->set_client_id("client-1");
  absl::StatusOr<Update> h = UpdateFromHeader(header);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->client_id, "client-1");
  EXPECT_EQ(h->kind, u.kind);
  EXPECT_EQ(h->seed_scalars, u.seed_scalars);
  EXPECT_EQ(h->metrics, u.metrics);
  EXPECT_EQ(h->num_examples, u.num_examples);
  EXPECT_EQ(h->peak_memory_bytes, u.peak_memory_bytes);
  header.set_kind(v1::UPDATE_KIND_MASKED);
  EXPECT_FALSE(UpdateFromHeader(header).ok());
}

TEST(GrpcWireTest, RefusesWhatTheStructsCannotHold) {
  v1::Binding b;
  b.set_protocol_version(kProtocolVersion);
  b.set_phase(static_cast<v1::Phase>(42));
  absl::StatusOr<Binding> bad_phase = FromProto(b);
  EXPECT_EQ(bad_phase.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_phase.status().message().find("phase"), std::string::npos);
  b.set_phase(v1::PHASE_COLLECT);
  b.set_protocol_version(2);
  EXPECT_NE(FromProto(b).status().message().find("protocol_version"), std::string::npos);

  v1::Task t;
  ToProto(RandomTask(3), &t);
  t.mutable_secagg()->set_graph_seed("short");
  EXPECT_NE(FromProto(t).status().message().find("graph_seed"), std::string::npos);
  ToProto(RandomTask(3), &t);
  t.set_method(static_cast<v1::Method>(9));
  EXPECT_FALSE(FromProto(t).ok());
}

TEST(GrpcWireTest, SigningBytesAreDeterministicAndSkipTheMac) {
  v1::ReportRequest a;
  a.mutable_binding()->set_client_id("c");
  (*a.mutable_metrics())["zeta"] = 1.0;
  (*a.mutable_metrics())["alpha"] = 2.0;
  (*a.mutable_metrics())["mid"] = 3.0;
  v1::ReportRequest b;
  b.mutable_binding()->set_client_id("c");
  (*b.mutable_metrics())["mid"] = 3.0;
  (*b.mutable_metrics())["alpha"] = 2.0;
  (*b.mutable_metrics())["zeta"] = 1.0;
  b.set_mac("anything");
  const std::string sa = SigningBytes("/m", a);
  EXPECT_EQ(sa, SigningBytes("/m", b));
  EXPECT_EQ(sa.substr(0, 3), std::string("/m\0", 3));
  EXPECT_NE(sa, SigningBytes("/n", a));
  (*b.mutable_metrics())["alpha"] = 2.5;
  EXPECT_NE(sa, SigningBytes("/m", b));
  EXPECT_EQ(b.mac(), "anything");  // the request itself is untouched
}

}  // namespace
}  // namespace fedfm::protocols::wire
