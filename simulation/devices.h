// Virtual devices: the built-in catalog, devices defined in the run config
// ([[simulation.profiles]]), the fleet of a simulation, and the virtual
// clock's per-device arithmetic.
//
// A VirtualDevice is what the coordinator is told about a device (a
// protocols::DeviceProfile: memory, sustained FLOP/s, bandwidth, supported
// methods; the method policy's input, coordinator/policy.h) plus how the
// device behaves in virtual time (speed jitter). Times come from the
// policy's own cost model (EstimateRoundSeconds / EstimateFlopsPerToken),
// never from a second one; transfers are real byte counts over the
// profile's bandwidth.
//
// Random draws (online at a round's start, per-round slowdown, drop-out
// instant) are pure functions of (run seed, round slot, client index,
// purpose): the same seed replays the same fleet behaviour. Torch-free.
#ifndef FEDFM_SIMULATION_DEVICES_H_
#define FEDFM_SIMULATION_DEVICES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/policy.h"
#include "protocols/config/options.h"
#include "protocols/device.h"

namespace fedfm::simulation {

struct VirtualDevice {
  protocols::DeviceProfile profile;
  // Each round the device runs at flops_per_s / U[1, 1 + jitter] (thermal
  // throttling, background load); the policy plans with the nominal rate, so
  // devices planned close to the deadline straggle now and then.
  double jitter = 0.0;
  std::string description;  // one line for reports
};

// The built-in catalog, in this order: "h100", "rtx4090", "jetson_orin",
// "rpi5", "phone" (devices.cc states the source of every number).
const std::vector<VirtualDevice>& DeviceCatalog();

// A [[simulation.profiles]] entry as a device.
VirtualDevice DeviceFromOptions(const protocols::SimProfileOptions& options);

// The device named `name`: a [[simulation.profiles]] entry of `options`
// first, else the catalog. NotFound naming it and every known name.
absl::StatusOr<VirtualDevice> FindDevice(const std::string& name, const protocols::SimulationOptions& options);

// Which device each registered client is. Memory: 2 bytes per client.
struct Fleet {
  std::vector<VirtualDevice> devices;  // the distinct devices, in group order
  std::vector<uint16_t> device_of;     // client index -> index into `devices`
  std::vector<int64_t> count;          // clients per device

  int64_t num_clients() const { return static_cast<int64_t>(device_of.size()); }
  const VirtualDevice& of(int64_t client) const { return devices[device_of[client]]; }
};

// The default mixed fleet, as proportions of simulation.num_clients:
// h100 1/8, rtx4090 1/8, jetson_orin 1/4, rpi5 1/4, phone 1/4.
std::vector<protocols::SimDeviceGroup> DefaultFleetGroups();

// The fleet of simulation.num_clients clients from simulation.devices (the
// default mixed fleet when empty). Group counts are used as given when they
// sum to num_clients, else as proportions of it (largest remainders; every
// group keeps at least one client when there is room). Clients get their
// device in an order shuffled from `seed`, so client ids do not cluster by
// device. NotFound for an unknown profile name; InvalidArgument for more
// than 65535 distinct devices.
absl::StatusOr<Fleet> BuildFleet(const protocols::SimulationOptions& options, uint64_t seed);

// --- Virtual clock ------------------------------------------------------------

// Compute seconds of one round of `choice` on `device` at nominal speed:
// the policy's EstimateRoundSeconds with the transfers left out.
double NominalComputeSeconds(const coordinator::WorkloadShape& shape, const protocols::DeviceProfile& device,
                             const coordinator::MethodChoice& choice);
// Seconds to move `bytes` over `bytes_per_s` (0 when the rate is 0: unlimited).
double TransferSeconds(uint64_t bytes, double bytes_per_s);

// What a client's device does in one round attempt, drawn from (seed, slot,
// client): `slot` numbers round attempts (every selection try, so a retried
// round draws afresh).
struct DeviceDraws {
  bool online = true;        // polls when the round starts (probability: availability)
  double slowdown = 1.0;     // in [1, 1 + jitter]
  bool drops_out = false;    // goes offline during the round (probability: dropout)
  double dropout_fraction = 1.0;  // when, as a fraction in [0, 1) of its planned round time
};
DeviceDraws DrawDevice(const VirtualDevice& device, uint64_t seed, uint64_t slot, uint64_t client);

}  // namespace fedfm::simulation

#endif  // FEDFM_SIMULATION_DEVICES_H_
