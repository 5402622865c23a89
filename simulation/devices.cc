#include "simulation/devices.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "protocols/config/config.h"
#include "zeroth_order/philox.h"

namespace fedfm::simulation {
namespace {

using protocols::DeviceProfile;
using protocols::Method;

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr double kTera = 1e12;
constexpr double kMbps = 1e6 / 8.0;  // bytes per second in one megabit per second

// Purposes of the simulation's own draws (zeroth_order::DeriveSeed).
constexpr uint32_t kPurposeFleet = 0x53464C54u;     // "SFLT": device order of the fleet
constexpr uint32_t kPurposeOnline = 0x534F4E4Cu;    // "SONL": online at a round's start
constexpr uint32_t kPurposeSlowdown = 0x53534C57u;  // "SSLW": per-round slowdown
constexpr uint32_t kPurposeDropout = 0x53445250u;   // "SDRP": drop-out and its instant

// Uniform in [0, 1) from a 64-bit value.
double Unit(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

VirtualDevice Make(const char* name, const char* accelerator, double memory_gib, double tflops, double up_mbps,
                   double down_mbps, double availability, double dropout, double jitter,
                   std::vector<Method> methods, const char* description) {
  VirtualDevice d;
  d.profile.name = name;
  d.profile.accelerator = accelerator;
  d.profile.memory_bytes = static_cast<uint64_t>(memory_gib * kGiB);
  d.profile.flops_per_s = tflops * kTera;
  d.profile.uplink_bytes_per_s = up_mbps * kMbps;
  d.profile.downlink_bytes_per_s = down_mbps * kMbps;
  d.profile.availability = availability;
  d.profile.dropout = dropout;
  d.profile.methods = std::move(methods);
  d.jitter = jitter;
  d.description = description;
  return d;
}

std::vector<VirtualDevice> BuildCatalog() {
  std::vector<VirtualDevice> c;
  // H100 SXM5 80 GB: 989 TFLOP/s dense BF16 tensor math (NVIDIA H100
  // datasheet); large-model training sustains roughly 40% of it (reported
  // MFU of Megatron/MosaicML runs: 35-50%) -> 400 TFLOP/s. A datacenter
  // link of 10 Gbit/s each way. Preemption and maintenance are rare.
  c.push_back(Make("h100", "cuda", 80, 400, 10'000, 10'000, /*availability=*/0.99, /*dropout=*/0.01,
                   /*jitter=*/0.05, {}, "datacenter GPU server (H100 SXM 80 GB, 10 Gbit/s)"));
  // RTX 4090 24 GB: 165 TFLOP/s dense FP16/BF16 tensor math with FP32
  // accumulate (NVIDIA Ada Lovelace whitepaper); ~35% sustained -> 60
  // TFLOP/s. Office or home fibre: 500 Mbit/s down, 50 up. A workstation is
  // also used for other work: online 90% of the time, interrupted now and then.
  c.push_back(Make("rtx4090", "cuda", 24, 60, 50, 500, 0.90, 0.05, 0.15, {},
                   "workstation GPU (RTX 4090 24 GB, fibre 500/50 Mbit/s)"));
  // Jetson AGX Orin 32 GB-class board: ~3.3 TFLOP/s FP32 / ~40 TFLOP/s dense
  // FP16 tensor math on its Ampere GPU (NVIDIA Jetson AGX Orin datasheet:
  // 200 sparse INT8 TOPS); small-batch training on a shared-memory board
  // sustains ~5 TFLOP/s. 16 GiB of the unified memory for training. Wired
  // or Wi-Fi site link 100/20 Mbit/s.
  c.push_back(Make("jetson_orin", "cuda", 16, 5, 20, 100, 0.85, 0.08, 0.20, {},
                   "edge board (Jetson AGX Orin class, 100/20 Mbit/s)"));
  // Raspberry Pi 5 8 GB: 4x Cortex-A76 at 2.4 GHz, two 128-bit NEON FMA
  // pipes per core -> 154 GFLOP/s FP32 peak; LibTorch CPU training on such
  // cores sustains ~13% -> 20 GFLOP/s. 6 GiB usable. Home Wi-Fi 50/10
  // Mbit/s. Throttles under sustained load without active cooling (jitter).
  c.push_back(Make("rpi5", "cpu", 6, 0.020, 10, 50, 0.75, 0.10, 0.35, {},
                   "single-board computer (Raspberry Pi 5 class, Wi-Fi 50/10 Mbit/s)"));
  // 2023 flagship phone (Snapdragon 8 Gen 2 class): ~30 GFLOP/s sustained
  // FP32 under thermal limits. Phone ML runtimes (Core ML, NNAPI, TFLite
  // delegates) run inference, not autograd, so it trains zeroth-order only
  // (forward passes: MeZO's setting). 3 GiB for a background job. LTE/5G
  // 30 Mbit/s down, 5 up (order of the medians reported by Ookla). Trains
  // only when idle, charging and on an unmetered network: online 60%,
  // drops out more than anything else.
  c.push_back(Make("phone", "cpu", 3, 0.030, 5, 30, 0.60, 0.15, 0.40, {Method::kZerothOrder},
                   "phone (flagship SoC, forward-only runtime, LTE 30/5 Mbit/s)"));
  return c;
}

bool MethodFromName(const std::string& name, Method* method) {
  for (Method m : {Method::kLora, Method::kPartial, Method::kZerothOrder}) {
    if (name == protocols::MethodName(m)) {
      *method = m;
      return true;
    }
  }
  return false;
}

}  // namespace

const std::vector<VirtualDevice>& DeviceCatalog() {
  static const std::vector<VirtualDevice>* catalog = new std::vector<VirtualDevice>(BuildCatalog());
  return *catalog;
}

VirtualDevice DeviceFromOptions(const protocols::SimProfileOptions& o) {
  std::vector<Method> methods;
  for (const std::string& name : o.methods) {
    Method m;
    if (MethodFromName(name, &m)) methods.push_back(m);
  }
  VirtualDevice d = Make(o.name.c_str(), o.accelerator.c_str(), o.memory_gib, o.tflops, o.uplink_mbps,
                         o.downlink_mbps, o.availability, o.dropout, o.jitter, std::move(methods), "");
  d.description = absl::StrCat("user profile (", o.tflops, " TFLOP/s, ", o.memory_gib, " GiB, ", o.downlink_mbps,
                               "/", o.uplink_mbps, " Mbit/s)");
  return d;
}

absl::StatusOr<VirtualDevice> FindDevice(const std::string& name, const protocols::SimulationOptions& options) {
  for (const protocols::SimProfileOptions& p : options.profiles) {
    if (p.name == name) return DeviceFromOptions(p);
  }
  for (const VirtualDevice& d : DeviceCatalog()) {
    if (d.profile.name == name) return d;
  }
  std::vector<std::string> known;
  for (const protocols::SimProfileOptions& p : options.profiles) known.push_back(p.name);
  for (const VirtualDevice& d : DeviceCatalog()) known.push_back(d.profile.name);
  return absl::NotFoundError(absl::StrCat("simulation.devices: unknown profile \"", name, "\"; known: ",
                                          absl::StrJoin(known, ", ")));
}

std::vector<protocols::SimDeviceGroup> DefaultFleetGroups() {
  // Eighths: 1 h100, 1 rtx4090, 2 jetson_orin, 2 rpi5, 2 phone.
  return {{"h100", 1}, {"rtx4090", 1}, {"jetson_orin", 2}, {"rpi5", 2}, {"phone", 2}};
}

absl::StatusOr<Fleet> BuildFleet(const protocols::SimulationOptions& options, uint64_t seed) {
  const int64_t n = options.num_clients;
  std::vector<protocols::SimDeviceGroup> groups =
      options.devices.empty() ? DefaultFleetGroups() : options.devices;
  // Merge groups naming the same device.
  Fleet fleet;
  std::vector<int64_t> weight;
  for (const protocols::SimDeviceGroup& g : groups) {
    absl::StatusOr<VirtualDevice> d = FindDevice(g.profile, options);
    if (!d.ok()) return d.status();
    auto it = std::find_if(fleet.devices.begin(), fleet.devices.end(),
                           [&](const VirtualDevice& x) { return x.profile.name == g.profile; });
    if (it == fleet.devices.end()) {
      fleet.devices.push_back(*std::move(d));
      weight.push_back(g.count);
    } else {
      weight[it - fleet.devices.begin()] += g.count;
    }
  }
  if (fleet.devices.size() > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("simulation.devices names ", fleet.devices.size(), " distinct profiles; at most 65535"));
  }
  const size_t k = fleet.devices.size();
  const int64_t total = std::accumulate(weight.begin(), weight.end(), int64_t{0});
  std::vector<int64_t> count(k, 0);
  if (total == n) {
    count = weight;
  } else {
    // Largest remainders of n * w / total; then every group keeps one client
    // when there are at least as many clients as groups.
    std::vector<std::pair<double, size_t>> remainders;
    int64_t given = 0;
    for (size_t i = 0; i < k; ++i) {
      const double exact = static_cast<double>(n) * static_cast<double>(weight[i]) / static_cast<double>(total);
      count[i] = static_cast<int64_t>(std::floor(exact));
      given += count[i];
      remainders.push_back({exact - std::floor(exact), i});
    }
    std::stable_sort(remainders.begin(), remainders.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    for (size_t j = 0; given < n; ++j, ++given) ++count[remainders[j % k].second];
    if (n >= static_cast<int64_t>(k)) {
      for (size_t i = 0; i < k; ++i) {
        if (count[i] > 0) continue;
        const size_t richest = static_cast<size_t>(std::max_element(count.begin(), count.end()) - count.begin());
        --count[richest];
        ++count[i];
      }
    }
  }
  fleet.count = count;
  fleet.device_of.reserve(static_cast<size_t>(n));
  for (size_t i = 0; i < k; ++i) fleet.device_of.insert(fleet.device_of.end(), static_cast<size_t>(count[i]), i);
  // Fisher-Yates from the seed.
  for (size_t i = fleet.device_of.size(); i > 1; --i) {
    const uint64_t r = zeroth_order::DeriveSeed(seed, i, 0, kPurposeFleet);
    const size_t j = static_cast<size_t>(r % i);
    std::swap(fleet.device_of[i - 1], fleet.device_of[j]);
  }
  return fleet;
}

double NominalComputeSeconds(const coordinator::WorkloadShape& shape, const DeviceProfile& device,
                             const coordinator::MethodChoice& choice) {
  DeviceProfile compute_only = device;
  compute_only.uplink_bytes_per_s = 0;
  compute_only.downlink_bytes_per_s = 0;
  return coordinator::EstimateRoundSeconds(shape, compute_only, choice, /*download_bytes=*/0);
}

double TransferSeconds(uint64_t bytes, double bytes_per_s) {
  return bytes_per_s > 0 ? static_cast<double>(bytes) / bytes_per_s : 0.0;
}

DeviceDraws DrawDevice(const VirtualDevice& device, uint64_t seed, uint64_t slot, uint64_t client) {
  DeviceDraws d;
  const auto draw = [&](uint32_t purpose, uint32_t which) {
    return Unit(zeroth_order::DeriveSeed(zeroth_order::DeriveSeed(seed, slot, which, purpose), client, 0, purpose));
  };
  d.online = draw(kPurposeOnline, 0) < device.profile.availability;
  d.slowdown = 1.0 + device.jitter * draw(kPurposeSlowdown, 0);
  d.drops_out = draw(kPurposeDropout, 0) < device.profile.dropout;
  d.dropout_fraction = draw(kPurposeDropout, 1);
  return d;
}

}  // namespace fedfm::simulation
