// The simulation: a federated run of virtual devices in one process, on the
// same coordinator::RoundEngine and client::ClientRuntime as a deployment.
//
//   registry   simulation.num_clients virtual clients, each a device index
//              (simulation/devices.h) and an example range (simulation/
//              data.h); every client is registered with the engine.
//   a round    the clients online at its start (profile availability) poll
//              in a seeded random order until the engine starts a round:
//              the engine samples rounds.clients_per_round of them and
//              assigns methods with coordinator::ChooseMethod (the same
//              policy as in deployment). Only the sampled clients come to
//              life: a Dataset copy, a Trainer from the TrainerFactory, a
//              ClientRuntime over an InProcessLink, one thread each. They
//              are destroyed when their part of the round is over.
//   time       virtual (coordinator::ManualClock): a client's compute time
//              is the policy's cost-model estimate for its method on its
//              device (slowed by the device's per-round jitter), transfers
//              are the real message sizes over the device's bandwidth;
//              messages reach the engine in virtual-time order
//              (internal/virtual_scheduler.h). Rounds close at
//              rounds.deadline_s of virtual time: a client whose update
//              would arrive later is a straggler; a client drawn to drop out
//              goes offline at a random instant of its round.
//   training   real: every sampled client trains on the shared base model
//              through its Trainer, at most `workers` at once (the rest
//              wait, in virtual-time order).
//
// Determinism: with the same config, data and trainers, the rounds (every
// field but the measured ones) are identical run to run, whatever the
// thread timing.
#ifndef FEDFM_SIMULATION_SIMULATION_H_
#define FEDFM_SIMULATION_SIMULATION_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "protocols/config/options.h"
#include "simulation/data.h"
#include "simulation/trainers.h"

namespace fedfm::simulation {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Progress for a terminal line; `on_progress` calls are serialized.
struct Progress {
  int64_t round = 0;         // the round in progress
  int64_t total_rounds = 0;  // planned (training + evaluation rounds)
  int64_t clients_done = 0;
  int64_t clients_selected = 0;
  std::string phase;         // "select" | "train" | "evaluate" | "done"
  double wall_s = 0;         // since RunSimulation started
  double eta_s = -1;         // what is left, estimated; < 0 unknown
};


// One method's part in one round.
struct MethodRound {
  int64_t selected = 0;    // sampled and assigned this method
  int64_t uploaded = 0;    // contribution accepted into the aggregate
  int64_t dropped = 0;     // went offline during the round (profile dropout)
  int64_t stragglers = 0;  // would have answered after the deadline
  int64_t other = 0;       // left out for another reason (SecAgg exclusion, refusal)
  uint64_t bytes_up = 0;   // payload of every selected client of the method
  uint64_t bytes_down = 0;
  double train_loss = kNaN;         // examples-weighted mean over uploaded clients
  double compute_virtual_s = 0;     // mean virtual compute time of clients that trained
  uint64_t memory_estimate_bytes = 0;  // the policy's estimate (largest)
  int64_t client_steps = 0;         // local steps actually trained
};

// One round attempt (round 0: the initial state, evaluated only).
struct RoundRecord {
  int64_t round = 0;
  int64_t attempt = 1;
  bool evaluation = false;  // an evaluation round of the engine (rounds.eval_every)
  bool committed = true;
  std::string failure;      // why an attempt failed
  int64_t clients_polled = 0;  // online clients that polled before selection
  std::map<protocols::Method, MethodRound> methods;
  std::map<std::string, double> metrics;  // the engine's round-level metrics
  double train_loss = kNaN;      // the engine's examples-weighted mean
  double eval_loss = kNaN;       // central evaluation after the round (or the clients' reports)
  double eval_accuracy = kNaN;   // classification only
  double virtual_start_s = 0;    // since the run's start
  double virtual_end_s = 0;
  // Measured: they differ from run to run.
  double wall_s = 0;
  double wall_total_s = 0;
  double train_wall_s = 0;       // summed over clients
  uint64_t peak_memory_bytes = 0;  // the largest peak a trainer reported
};

// A device of the fleet and what the policy gives it.
struct FleetEntry {
  std::string device;
  std::string description;
  int64_t clients = 0;
  std::string method;            // "lora" | "partial" | "zo", or "none: <why>"
  int lora_rank = 0;
  int top_blocks = 0;
  double estimated_round_s = 0;  // the policy's estimate at nominal speed
  uint64_t estimated_memory_bytes = 0;
};

struct SimulationResult {
  std::string run_id;
  std::string finish_reason;
  std::vector<RoundRecord> rounds;
  std::vector<FleetEntry> fleet;
  double initial_eval_loss = kNaN;
  double final_eval_loss = kNaN;
  protocols::TensorMap final_state;  // the global state of the last committed round
  double virtual_time_s = 0;
  // The deadline of each SecAgg+ key phase (and of unmasking): twice the
  // slowest device's time to download the state and exchange keys, at least
  // 10 ms, at most a quarter of rounds.deadline_s.
  double secagg_phase_s = 0;
  // Accounting of client state (the scale claim): the registry is
  // proportional to num_clients; everything else to the sampled clients.
  uint64_t registry_bytes = 0;       // device index + example offsets, all clients
  int64_t peak_live_clients = 0;     // clients whose state existed at once
  uint64_t peak_live_client_bytes = 0;  // their datasets plus working copies of the state
  // Measured.
  int workers = 0;
  double wall_s = 0;
  double train_wall_s = 0;        // inside Trainer::Train, summed over clients
  double eval_wall_s = 0;         // central and client evaluations
  double train_cpu_s = 0;         // CPU time of the calling threads inside Trainer::Train
  double eval_cpu_s = 0;          // ... inside Trainer::Evaluate (central and client evaluations)
  double process_cpu_s = 0;       // CPU time of the whole process during the run
  int64_t client_steps = 0;
};

struct SimulatorOptions {
  // Clients training at once; 0: simulation.threads, and when that is 0 too,
  // every core.
  int workers = 0;
  // Evaluate the global state on the central evaluation set after every
  // committed training round (and the initial state first).
  bool central_eval = true;
  std::function<void(const Progress&)> on_progress;
  // Each round attempt once recorded (round 0 first), from the calling thread.
  std::function<void(const RoundRecord&)> on_round;
};

// Runs the simulation of `config` on `data` (laid out for
// simulation.num_clients clients) with `trainers`. Errors: the config or the
// fleet is invalid, no round can start (too few clients online or able to
// train), or a client failed in a way a device would not (a trainer error).
absl::StatusOr<SimulationResult> RunSimulation(const protocols::RunConfig& config, TrainerFactory& trainers,
                                               const SimData& data, const SimulatorOptions& options = {});

// The fleet of `config` and the method the policy gives each of its devices,
// at nominal speed (`trainers` gives the model's dimensions).
absl::StatusOr<std::vector<FleetEntry>> PlanFleet(const protocols::RunConfig& config, const TrainerFactory& trainers);

// The client id of registered client `index` ("sim-00000042").
std::string SimClientId(int64_t index);

}  // namespace fedfm::simulation

#endif  // FEDFM_SIMULATION_SIMULATION_H_
