#include "simulation/devices.h"

#include <map>

#include "coordinator/policy.h"
#include "gtest/gtest.h"

namespace fedfm::simulation {
namespace {

using protocols::Method;

// stories260K's sizes (checkpoint header; /work data README facts).
protocols::ModelDims Stories260K() {
  protocols::ModelDims d;
  d.num_params = 260032;
  d.num_layers = 5;
  d.dim = 64;
  d.hidden_dim = 172;
  d.num_heads = 8;
  d.num_kv_heads = 4;
  d.vocab_size = 512;
  return d;
}

TEST(DevicesTest, CatalogHasTheFiveDevices) {
  const std::vector<VirtualDevice>& c = DeviceCatalog();
  ASSERT_EQ(c.size(), 5u);
  const char* names[] = {"h100", "rtx4090", "jetson_orin", "rpi5", "phone"};
  for (size_t i = 0; i < c.size(); ++i) {
    EXPECT_EQ(c[i].profile.name, names[i]);
    EXPECT_GT(c[i].profile.memory_bytes, 0u);
    EXPECT_GT(c[i].profile.uplink_bytes_per_s, 0);
    EXPECT_GE(c[i].profile.availability, 0.5);
    EXPECT_FALSE(c[i].description.empty());
  }
  EXPECT_GT(c[0].profile.flops_per_s, c[1].profile.flops_per_s);
  EXPECT_GT(c[2].profile.flops_per_s, c[3].profile.flops_per_s);
  EXPECT_EQ(c[4].profile.methods, std::vector<Method>{Method::kZerothOrder});
}

TEST(DevicesTest, ConfigProfilesOverrideTheCatalog) {
  protocols::SimulationOptions o;
  protocols::SimProfileOptions p;
  p.name = "rpi5";
  p.tflops = 0.5;
  p.uplink_mbps = 8;
  p.methods = {"partial"};
  o.profiles.push_back(p);
  absl::StatusOr<VirtualDevice> d = FindDevice("rpi5", o);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_DOUBLE_EQ(d->profile.flops_per_s, 0.5e12);
  EXPECT_DOUBLE_EQ(d->profile.uplink_bytes_per_s, 1e6);
  EXPECT_EQ(d->profile.methods, std::vector<Method>{Method::kPartial});
  absl::StatusOr<VirtualDevice> missing = FindDevice("toaster", o);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("\"toaster\""), std::string::npos);
  EXPECT_NE(missing.status().message().find("jetson_orin"), std::string::npos);
}

TEST(DevicesTest, FleetUsesExactCountsOrProportions) {
  protocols::SimulationOptions o;
  o.num_clients = 16;
  absl::StatusOr<Fleet> def = BuildFleet(o, 7);
  ASSERT_TRUE(def.ok()) << def.status();
  EXPECT_EQ(def->count, (std::vector<int64_t>{2, 2, 4, 4, 4}));
  EXPECT_EQ(def->num_clients(), 16);

  o.devices = {{"h100", 1}, {"phone", 3}};
  o.num_clients = 10;
  absl::StatusOr<Fleet> f = BuildFleet(o, 7);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->count, (std::vector<int64_t>{3, 7}));  // 2.5 / 7.5: the tie goes to the first
  std::map<int, int> seen;
  for (uint16_t d : f->device_of) ++seen[d];
  EXPECT_EQ(seen[0], 3);
  EXPECT_EQ(seen[1], 7);
  // Shuffled by the seed, reproducibly.
  absl::StatusOr<Fleet> again = BuildFleet(o, 7);
  absl::StatusOr<Fleet> other = BuildFleet(o, 8);
  EXPECT_EQ(again->device_of, f->device_of);
  EXPECT_NE(other->device_of, f->device_of);

  o.devices = {{"h100", 1}, {"toaster", 1}};
  EXPECT_EQ(BuildFleet(o, 7).status().code(), absl::StatusCode::kNotFound);
}

TEST(DevicesTest, ComputePlusTransfersIsThePolicyEstimate) {
  protocols::RunConfig config;
  const coordinator::WorkloadShape shape = coordinator::MakeWorkloadShape(config, Stories260K());
  for (const VirtualDevice& d : DeviceCatalog()) {
    for (Method m : {Method::kLora, Method::kPartial, Method::kZerothOrder}) {
      coordinator::MethodChoice c{.method = m, .lora_rank = 8, .top_blocks = 2};
      const uint64_t down = coordinator::EstimateDownloadBytes(shape, config);
      const double whole = coordinator::EstimateRoundSeconds(shape, d.profile, c, down);
      const double parts = NominalComputeSeconds(shape, d.profile, c) +
                           TransferSeconds(coordinator::EstimateUploadBytes(shape, c), d.profile.uplink_bytes_per_s) +
                           TransferSeconds(down, d.profile.downlink_bytes_per_s);
      EXPECT_NEAR(parts, whole, 1e-12 * whole) << d.profile.name;
    }
  }
  EXPECT_DOUBLE_EQ(TransferSeconds(1000, 0), 0.0);
}

// With the default scenario's workload and deadline the policy gives every
// method to some device: LoRA to the GPUs, partial layers to the Pi (LoRA
// misses the deadline), zeroth order to the phone.
TEST(DevicesTest, DefaultDeadlineSpreadsTheMethods) {
  protocols::RunConfig config;
  config.train.local_steps = 10;
  config.train.batch_size = 8;
  config.data.seq_len = 64;
  config.lora.rank = 8;
  config.partial.top_blocks = 2;
  config.rounds.deadline_s = 0.3;
  const coordinator::WorkloadShape shape = coordinator::MakeWorkloadShape(config, Stories260K());
  std::map<std::string, Method> got;
  for (const VirtualDevice& d : DeviceCatalog()) {
    absl::StatusOr<coordinator::MethodChoice> c = coordinator::ChooseMethod(d.profile, config, shape);
    ASSERT_TRUE(c.ok()) << d.profile.name << ": " << c.status();
    got[d.profile.name] = c->method;
  }
  EXPECT_EQ(got["h100"], Method::kLora);
  EXPECT_EQ(got["rtx4090"], Method::kLora);
  EXPECT_EQ(got["jetson_orin"], Method::kLora);
  EXPECT_EQ(got["rpi5"], Method::kPartial);
  EXPECT_EQ(got["phone"], Method::kZerothOrder);
}

TEST(DevicesTest, DrawsAreReproducibleAndFollowTheProfile) {
  VirtualDevice d = DeviceCatalog()[3];  // rpi5
  int online = 0, drops = 0;
  double max_slowdown = 1.0;
  constexpr int kN = 20000;
  for (int i = 0; i < kN; ++i) {
    DeviceDraws a = DrawDevice(d, 42, 3, static_cast<uint64_t>(i));
    DeviceDraws b = DrawDevice(d, 42, 3, static_cast<uint64_t>(i));
    ASSERT_EQ(a.online, b.online);
    ASSERT_EQ(a.slowdown, b.slowdown);
    online += a.online;
    drops += a.drops_out;
    max_slowdown = std::max(max_slowdown, a.slowdown);
    ASSERT_GE(a.slowdown, 1.0);
    ASSERT_LE(a.slowdown, 1.0 + d.jitter);
    ASSERT_GE(a.dropout_fraction, 0.0);
    ASSERT_LT(a.dropout_fraction, 1.0);
  }
  EXPECT_NEAR(online / double(kN), d.profile.availability, 0.02);
  EXPECT_NEAR(drops / double(kN), d.profile.dropout, 0.02);
  EXPECT_GT(max_slowdown, 1.0 + 0.9 * d.jitter);
  // Another slot draws afresh.
  int same = 0;
  for (int i = 0; i < 1000; ++i) {
    same += DrawDevice(d, 42, 3, i).slowdown == DrawDevice(d, 42, 4, i).slowdown;
  }
  EXPECT_LT(same, 10);
}

}  // namespace
}  // namespace fedfm::simulation
