#include "simulation/simulation.h"

#include <time.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/runtime.h"
#include "coordinator/clock.h"
#include "coordinator/policy.h"
#include "coordinator/round_engine.h"
#include "coordinator/round_engine_seed_replay.h"
#include "coordinator/sqlite_store.h"
#include "protocols/config/config.h"
#include "protocols/status_macros.h"
#include "simulation/devices.h"
#include "simulation/in_process_link.h"
#include "simulation/internal/virtual_scheduler.h"
#include "zeroth_order/philox.h"

namespace fedfm::simulation {
namespace {

using coordinator::MethodChoice;
using coordinator::WorkloadShape;
using internal::VirtualScheduler;
using protocols::Method;
using SteadyClock = std::chrono::steady_clock;

// Virtual milliseconds between the end of a round and the next selection:
// longer than the engine's liveness window, so that only the clients polling
// for the new round count as available.
constexpr int64_t kRoundGapMs = 2;
constexpr int64_t kLivenessMs = 1;
// Give up when this many selection attempts in a row start no round.
constexpr int kMaxEmptySlots = 50;
constexpr int64_t kMaxStepsPerRound = 100000;

constexpr uint32_t kPurposePollOrder = 0x53504F4Cu;  // "SPOL"
constexpr uint32_t kPurposeSecAggKey = 0x53534B59u;  // "SSKY"
constexpr uint32_t kPurposeDpSeed = 0x53445053u;     // "SDPS"
constexpr uint32_t kPurposeJitter = 0x534A4954u;     // "SJIT"

double Since(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

double CpuSeconds(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

int64_t Micros(double seconds) { return static_cast<int64_t>(std::ceil(seconds * 1e6)); }

bool RoundActive(const coordinator::RoundEngineStatus& s) {
  return s.phase != protocols::Phase::kIdle && s.phase != protocols::Phase::kDone;
}

// Training slots, granted in virtual-time order (the client whose training
// ends first in virtual time goes first), so that no client waits for a
// slot behind clients that the virtual clock will need later.
// Each slot is numbered (0..slots-1) so that the trainers can bind it to a
// CUDA stream of its own (TrainerFactory::EnterSlot).
class WorkerPool {
 public:
  explicit WorkerPool(int slots) {
    for (int i = 0; i < slots; ++i) free_.insert(i);
  }
  // The slot granted.
  int Acquire(int64_t priority, int id) {
    std::unique_lock<std::mutex> lock(mu_);
    const std::pair<int64_t, int> me{priority, id};
    waiting_.insert(me);
    cv_.wait(lock, [&] { return !free_.empty() && *waiting_.begin() == me; });
    waiting_.erase(me);
    const int slot = *free_.begin();
    free_.erase(free_.begin());
    cv_.notify_all();
    return slot;
  }
  void Release(int slot) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.insert(slot);
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<int> free_;
  std::set<std::pair<int64_t, int>> waiting_;
};

// The scheduler's view of the engine.
class EngineProbe final : public VirtualScheduler::Probe {
 public:
  explicit EngineProbe(coordinator::RoundEngine& engine) : engine_(engine) {}
  uint64_t Epoch() override {
    const coordinator::RoundEngineStatus s = engine_.Status();
    // phase_changes: a SecAgg+ group can close a phase while the round's
    // (earliest) phase stays the same.
    const uint64_t round = zeroth_order::DeriveSeed(static_cast<uint64_t>(s.round), static_cast<uint64_t>(s.attempt),
                                                    static_cast<uint32_t>(s.phase), s.finished ? 1u : 0u);
    return zeroth_order::DeriveSeed(round, static_cast<uint64_t>(s.phase_changes), 0, 0);
  }
  int64_t DeadlineMs() override {
    const coordinator::RoundEngineStatus s = engine_.Status();
    return RoundActive(s) ? s.phase_deadline_ms : 0;
  }
  absl::Status Tick() override { return engine_.Tick(); }

 private:
  coordinator::RoundEngine& engine_;
};

// What every active client of the run reaches.
struct Shared {
  const protocols::RunConfig& config;
  WorkloadShape shape;
  TrainerFactory& trainers;
  coordinator::RoundEngine& engine;
  WorkerPool pool;
  uint64_t state_bytes = 0;
  VirtualScheduler* sched = nullptr;  // the current round's

  std::mutex mu;  // guards everything below
  double train_wall_s = 0;
  double eval_wall_s = 0;
  double train_cpu_s = 0;
  double eval_cpu_s = 0;
  int64_t live_clients = 0;
  uint64_t live_bytes = 0;
  int64_t peak_live_clients = 0;
  uint64_t peak_live_bytes = 0;
  int64_t clients_done = 0;
  int64_t clients_selected = 0;
  Progress progress;
  std::function<void(const Progress&)> on_progress;
  SteadyClock::time_point start;

  Shared(const protocols::RunConfig& c, WorkloadShape s, TrainerFactory& t, coordinator::RoundEngine& e, int workers)
      : config(c), shape(s), trainers(t), engine(e), pool(workers) {}

  void Report(const std::string& phase) {  // under mu
    if (!on_progress) return;
    progress.phase = phase;
    progress.clients_done = clients_done;
    progress.clients_selected = clients_selected;
    progress.wall_s = Since(start);
    on_progress(progress);
  }
};

struct ActiveClient;

// A client's messages on the virtual clock.
class ClientTransport final : public LinkTransport {
 public:
  ClientTransport(ActiveClient& c, Shared& s) : c_(c), s_(s) {}
  absl::Status Send(uint64_t bytes_up) override;
  void Receive(uint64_t bytes_down) override;
  bool AwaitChange() override;
  // When the device goes offline (virtual us); -1: it does not (or not yet known).
  int64_t DropAt();

 private:
  ActiveClient& c_;
  Shared& s_;
};

// The Trainer the runtime sees: puts the compute on the virtual clock, then
// trains for real with the factory's trainer.
class VirtualTrainer final : public client::Trainer {
 public:
  VirtualTrainer(ActiveClient& c, Shared& s) : c_(c), s_(s) {}
  absl::StatusOr<protocols::Update> Train(const protocols::Task& task, client::TrainableState& state,
                                          client::Dataset& data) override;
  absl::StatusOr<protocols::EvalReport> Evaluate(const protocols::Task& task, const client::TrainableState& state,
                                                 client::Dataset& data) override;

 private:
  // Passes `compute_us` of virtual time, or fails as the device would
  // (offline, or past the deadline).
  absl::Status Spend(int64_t compute_us);
  absl::StatusOr<client::Trainer*> Inner(Method method);
  // Runs `work` in a worker slot (granted in virtual-time order, bound
  // through TrainerFactory::EnterSlot) and adds its wall and thread CPU
  // seconds to *wall_total and *cpu_total.
  template <typename Work>
  auto InSlot(Work&& work, double Shared::*wall_total, double Shared::*cpu_total);

  ActiveClient& c_;
  Shared& s_;
  std::map<Method, std::unique_ptr<client::Trainer>> inner_;
};

class VirtualEnv final : public client::ClientEnv {
 public:
  VirtualEnv(VirtualScheduler& sched, int actor) : sched_(sched), actor_(actor) {}
  int64_t NowMs() override { return sched_.Now(actor_) / 1000; }
  void SleepMs(int64_t ms) override { sched_.Advance(actor_, ms * 1000); }

 private:
  VirtualScheduler& sched_;
  int actor_;
};

struct ActiveClient {
  int64_t index = 0;
  std::string id;
  const VirtualDevice* device = nullptr;
  DeviceDraws draws;
  int actor = -1;
  int64_t start_us = 0;

  // Exists only while the client is sampled.
  client::Dataset data;
  std::unique_ptr<ClientTransport> transport;
  std::unique_ptr<InProcessLink> link;
  std::unique_ptr<VirtualTrainer> trainer;
  std::unique_ptr<VirtualEnv> env;
  std::unique_ptr<client::ClientRuntime> runtime;
  uint64_t live_bytes = 0;

  // What happened.
  std::optional<protocols::Task> task;
  bool offline = false;
  bool straggler = false;
  int64_t drop_at_us = -1;
  std::string refusal;
  absl::Status error;
  bool trained = false;
  double compute_virtual_s = 0;
  int64_t steps = 0;
  uint64_t peak_memory = 0;
  LinkStats traffic;
};

int64_t ClientTransport::DropAt() {
  if (!c_.draws.drops_out || !c_.link->last_task().has_value()) return -1;
  if (c_.drop_at_us >= 0) return c_.drop_at_us;
  const protocols::Task& t = *c_.link->last_task();
  const MethodChoice choice{.method = t.method, .lora_rank = t.lora_rank, .top_blocks = t.top_blocks};
  const double planned = coordinator::EstimateRoundSeconds(
      s_.shape, c_.device->profile, choice, coordinator::EstimateDownloadBytes(s_.shape, s_.config));
  c_.drop_at_us = c_.start_us + Micros(c_.draws.dropout_fraction * planned * c_.draws.slowdown);
  return c_.drop_at_us;
}

absl::Status ClientTransport::Send(uint64_t bytes_up) {
  if (c_.offline) return absl::UnavailableError(absl::StrCat("virtual device ", c_.id, " is offline"));
  const int64_t now = s_.sched->Now(c_.actor);
  const int64_t dt = Micros(TransferSeconds(bytes_up, c_.device->profile.uplink_bytes_per_s));
  const int64_t drop = DropAt();
  if (drop >= 0 && now + dt >= drop) {
    s_.sched->Advance(c_.actor, std::max<int64_t>(0, drop - now));
    c_.offline = true;
    return absl::UnavailableError(absl::StrCat("virtual device ", c_.id, " went offline"));
  }
  s_.sched->Advance(c_.actor, dt);
  if (!s_.sched->Acquire(c_.actor)) return absl::UnavailableError("the simulation stopped");
  return absl::OkStatus();
}

void ClientTransport::Receive(uint64_t bytes_down) {
  s_.sched->Release(c_.actor);
  s_.sched->Advance(c_.actor, Micros(TransferSeconds(bytes_down, c_.device->profile.downlink_bytes_per_s)));
}

bool ClientTransport::AwaitChange() { return s_.sched->AwaitChange(c_.actor); }

absl::Status VirtualTrainer::Spend(int64_t compute_us) {
  const int64_t now = s_.sched->Now(c_.actor);
  const int64_t drop = c_.transport->DropAt();
  if (drop >= 0 && now + compute_us >= drop) {
    s_.sched->Advance(c_.actor, std::max<int64_t>(0, drop - now));
    c_.offline = true;
    return absl::UnavailableError(absl::StrCat("virtual device ", c_.id, " went offline while training"));
  }
  const int64_t deadline_us = c_.link->task_deadline_ms() * 1000;
  if (deadline_us > 0 && now + compute_us >= deadline_us) {
    // A device that cannot finish before the deadline stops there.
    s_.sched->Advance(c_.actor, std::max<int64_t>(0, deadline_us - now));
    c_.straggler = true;
    return absl::DeadlineExceededError(absl::StrCat("virtual device ", c_.id, " would finish after the deadline"));
  }
  s_.sched->Advance(c_.actor, compute_us);
  c_.compute_virtual_s += static_cast<double>(compute_us) * 1e-6;
  return absl::OkStatus();
}

absl::StatusOr<client::Trainer*> VirtualTrainer::Inner(Method method) {
  auto it = inner_.find(method);
  if (it != inner_.end()) return it->second.get();
  FEDFM_ASSIGN_OR_RETURN(std::unique_ptr<client::Trainer> t,
                         s_.trainers.Create(method, static_cast<uint64_t>(c_.index)));
  return (inner_[method] = std::move(t)).get();
}

template <typename Work>
auto VirtualTrainer::InSlot(Work&& work, double Shared::*wall_total, double Shared::*cpu_total) {
  const int slot = s_.pool.Acquire(s_.sched->Now(c_.actor), c_.actor);
  const SteadyClock::time_point wall = SteadyClock::now();
  const double cpu = CpuSeconds(CLOCK_THREAD_CPUTIME_ID);
  auto result = [&] {
    const std::unique_ptr<SlotScope> scope = s_.trainers.EnterSlot(slot);
    return work();
  }();
  const double cpu_s = CpuSeconds(CLOCK_THREAD_CPUTIME_ID) - cpu;
  const double wall_s = Since(wall);
  s_.pool.Release(slot);
  std::lock_guard<std::mutex> lock(s_.mu);
  s_.*wall_total += wall_s;
  s_.*cpu_total += cpu_s;
  return result;
}

absl::StatusOr<protocols::Update> VirtualTrainer::Train(const protocols::Task& task, client::TrainableState& state,
                                                        client::Dataset& data) {
  const MethodChoice choice{.method = task.method, .lora_rank = task.lora_rank, .top_blocks = task.top_blocks};
  FEDFM_RETURN_IF_ERROR(Spend(Micros(NominalComputeSeconds(s_.shape, c_.device->profile, choice) * c_.draws.slowdown)));
  FEDFM_ASSIGN_OR_RETURN(client::Trainer * inner, Inner(task.method));
  absl::StatusOr<protocols::Update> update =
      InSlot([&] { return inner->Train(task, state, data); }, &Shared::train_wall_s, &Shared::train_cpu_s);
  if (update.ok()) {
    c_.trained = true;
    c_.steps += task.local_steps;
    c_.peak_memory = std::max(c_.peak_memory, update->peak_memory_bytes);
  }
  return update;
}

absl::StatusOr<protocols::EvalReport> VirtualTrainer::Evaluate(const protocols::Task& task,
                                                               const client::TrainableState& state,
                                                               client::Dataset& data) {
  // A forward pass per evaluated token: half a zeroth-order perturbation.
  const MethodChoice zo{.method = Method::kZerothOrder};
  const double forward_per_token = coordinator::EstimateFlopsPerToken(s_.shape, zo) /
                                   (2.0 * std::max(1, s_.shape.zo_perturbations));
  const double tokens = static_cast<double>(data.eval.size()) * s_.shape.seq_len;
  const double flops = std::max(1.0, c_.device->profile.flops_per_s);
  FEDFM_RETURN_IF_ERROR(Spend(Micros(tokens * forward_per_token / flops * c_.draws.slowdown)));
  FEDFM_ASSIGN_OR_RETURN(client::Trainer * inner, Inner(task.method));
  return InSlot([&] { return inner->Evaluate(task, state, data); }, &Shared::eval_wall_s, &Shared::eval_cpu_s);
}

// One client's part of a round, on its own thread.
void RunClient(ActiveClient& c, Shared& s) {
  for (int64_t steps = 0;; ++steps) {
    if (steps >= kMaxStepsPerRound) {
      c.error = absl::InternalError(absl::StrCat("client ", c.id, " took ", steps, " steps in one round"));
      break;
    }
    absl::StatusOr<client::StepResult> r = c.runtime->Step();
    if (!r.ok()) {
      if (!c.offline && !c.straggler) c.error = r.status();
      break;
    }
    const client::StepEvent e = r->event;
    if (e == client::StepEvent::kRoundDone || e == client::StepEvent::kStopped ||
        e == client::StepEvent::kWaiting) {
      break;
    }
    if (e == client::StepEvent::kRefused) {
      c.refusal = r->detail;
      // A message refused as late, or arriving after its round ended.
      if (r->detail.find("late") != std::string::npos || r->detail.find("stale round") != std::string::npos) {
        c.straggler = true;
      }
      break;
    }
    if (e == client::StepEvent::kLinkFailure) {
      if (!c.offline) c.refusal = absl::StrCat("link failure: ", r->detail);
      break;
    }
    if (e == client::StepEvent::kUploaded && c.link->last_task().has_value() &&
        !c.link->last_task()->secagg.enabled) {
      break;
    }
    if (r->next_in_ms > 0) s.sched->Advance(c.actor, r->next_in_ms * 1000);
  }
  c.task = c.link->last_task();
  c.traffic = c.link->stats();
  // The client's state ends with its part of the round.
  c.runtime.reset();
  c.trainer.reset();
  c.env.reset();
  c.data = client::Dataset();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.live_clients -= 1;
    s.live_bytes -= c.live_bytes;
    ++s.clients_done;
    s.Report("train");
  }
  s.sched->Finish(c.actor);
}

std::array<uint8_t, 32> SecAggSeed(uint64_t seed, uint64_t slot, uint64_t client) {
  std::array<uint8_t, 32> key{};
  for (int w = 0; w < 4; ++w) {
    const uint64_t word = zeroth_order::DeriveSeed(zeroth_order::DeriveSeed(seed, slot, w, kPurposeSecAggKey), client,
                                                   0, kPurposeSecAggKey);
    for (int b = 0; b < 8; ++b) key[w * 8 + b] = static_cast<uint8_t>(word >> (8 * b));
  }
  return key;
}

// Clients in a seeded random order, drawn lazily (memory: what was drawn).
class PollOrder {
 public:
  PollOrder(int64_t n, uint64_t seed, uint64_t slot) : n_(n), state_(zeroth_order::DeriveSeed(seed, slot, 0, kPurposePollOrder)) {
    if (n_ <= kShuffleLimit) {
      all_.resize(static_cast<size_t>(n_));
      for (int64_t i = 0; i < n_; ++i) all_[static_cast<size_t>(i)] = static_cast<uint32_t>(i);
      for (size_t i = all_.size(); i > 1; --i) std::swap(all_[i - 1], all_[Next() % i]);
    }
  }
  // False when every client was drawn.
  bool Draw(int64_t* client) {
    if (drawn_ >= n_) return false;
    if (n_ <= kShuffleLimit) {
      *client = all_[static_cast<size_t>(drawn_++)];
      return true;
    }
    // Rejection sampling while fewer than half are drawn, then a scan.
    while (2 * drawn_ < n_) {
      const int64_t c = static_cast<int64_t>(Next() % static_cast<uint64_t>(n_));
      if (seen_.insert(c).second) {
        ++drawn_;
        *client = c;
        return true;
      }
    }
    while (seen_.contains(scan_)) ++scan_;
    seen_.insert(scan_);
    ++drawn_;
    *client = scan_;
    return true;
  }

 private:
  static constexpr int64_t kShuffleLimit = int64_t{1} << 16;
  uint64_t Next() {
    state_ = zeroth_order::DeriveSeed(state_, 1, 0, kPurposePollOrder);
    return state_;
  }
  int64_t n_;
  uint64_t state_;
  int64_t drawn_ = 0;
  int64_t scan_ = 0;
  std::vector<uint32_t> all_;
  std::unordered_set<int64_t> seen_;
};

absl::StatusOr<protocols::EvalReport> CentralEvaluate(client::Trainer& evaluator, const protocols::RunConfig& config,
                                                      const protocols::TensorMap& state, const SimData& data,
                                                      Shared& s) {
  protocols::Task task;
  task.evaluate_only = true;
  task.method = Method::kLora;
  task.lora_rank = config.lora.rank;
  task.batch_size = config.train.batch_size;
  task.seq_len = config.data.seq_len;
  task.local_steps = config.train.local_steps;
  task.coverage = protocols::Coverage::Full(state);
  client::Dataset d = data.CentralEvalDataset();
  const SteadyClock::time_point wall = SteadyClock::now();
  const double cpu = CpuSeconds(CLOCK_THREAD_CPUTIME_ID);
  absl::StatusOr<protocols::EvalReport> r = evaluator.Evaluate(task, state, d);
  std::lock_guard<std::mutex> lock(s.mu);
  s.eval_wall_s += Since(wall);
  s.eval_cpu_s += CpuSeconds(CLOCK_THREAD_CPUTIME_ID) - cpu;
  return r;
}

// The deadline of a SecAgg+ key phase (advertise, share keys; also unmask).
// These phases are network only: a member downloads the global state, then
// sends and fetches keys of about kKeyBytesPerPeer per peer. Twice the
// slowest device's time for that, at least kMinKeyPhaseMs (a few of the
// clients' 1 ms polls), at most a quarter of the round deadline.
// A group's phase closes early once all its members answered; a member that
// dropped out holds its group up this long, and its group's clients start
// training only after it.
int64_t KeyPhaseMs(const Fleet& fleet, const protocols::RunConfig& config, const WorkloadShape& shape,
                   int64_t deadline_ms) {
  constexpr uint64_t kKeyBytesPerPeer = 256;
  const uint64_t download = coordinator::EstimateDownloadBytes(shape, config);
  const uint64_t keys = kKeyBytesPerPeer * static_cast<uint64_t>(std::max(1, config.rounds.clients_per_round));
  double slowest_s = 0;
  for (size_t d = 0; d < fleet.devices.size(); ++d) {
    if (fleet.count[d] == 0) continue;
    const protocols::DeviceProfile& p = fleet.devices[d].profile;
    slowest_s = std::max(slowest_s, TransferSeconds(download + keys, p.downlink_bytes_per_s) +
                                        TransferSeconds(keys, p.uplink_bytes_per_s));
  }
  constexpr int64_t kMinKeyPhaseMs = 10;
  const int64_t most = std::max<int64_t>(1, deadline_ms / 4);
  return std::clamp<int64_t>(Micros(2 * slowest_s) / 1000 + 1, std::min(kMinKeyPhaseMs, most), most);
}

double MetricOr(const std::map<std::string, double>& m, const std::string& name, double fallback) {
  auto it = m.find(name);
  return it == m.end() ? fallback : it->second;
}

}  // namespace

absl::StatusOr<std::vector<FleetEntry>> PlanFleet(const protocols::RunConfig& config, const TrainerFactory& trainers) {
  FEDFM_ASSIGN_OR_RETURN(Fleet fleet, BuildFleet(config.simulation, config.run.seed));
  const WorkloadShape shape = coordinator::MakeWorkloadShape(config, trainers.dims());
  std::vector<FleetEntry> out;
  for (size_t i = 0; i < fleet.devices.size(); ++i) {
    const VirtualDevice& d = fleet.devices[i];
    FleetEntry e;
    e.device = d.profile.name;
    e.description = d.description;
    e.clients = fleet.count[i];
    absl::StatusOr<MethodChoice> choice = coordinator::ChooseMethod(d.profile, config, shape);
    if (choice.ok()) {
      e.method = protocols::MethodName(choice->method);
      e.lora_rank = choice->lora_rank;
      e.top_blocks = choice->top_blocks;
      e.estimated_round_s = choice->round_seconds;
      e.estimated_memory_bytes = choice->memory_bytes;
    } else {
      e.method = absl::StrCat("none: ", choice.status().message());
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::string SimClientId(int64_t index) { return absl::StrFormat("sim-%08d", index); }

absl::StatusOr<SimulationResult> RunSimulation(const protocols::RunConfig& config, TrainerFactory& trainers,
                                               const SimData& data, const SimulatorOptions& options) {
  const SteadyClock::time_point start = SteadyClock::now();
  const double cpu_start = CpuSeconds(CLOCK_PROCESS_CPUTIME_ID);
  FEDFM_RETURN_IF_ERROR(protocols::ValidateRunConfig(config));
  const uint64_t seed = config.run.seed;
  FEDFM_ASSIGN_OR_RETURN(Fleet fleet, BuildFleet(config.simulation, seed));
  if (data.num_clients() != fleet.num_clients()) {
    return absl::InvalidArgumentError(absl::StrCat("the data is laid out for ", data.num_clients(),
                                                   " clients, simulation.num_clients is ", fleet.num_clients()));
  }
  const protocols::ModelDims dims = trainers.dims();
  const WorkloadShape shape = coordinator::MakeWorkloadShape(config, dims);
  FEDFM_ASSIGN_OR_RETURN(protocols::TensorMap initial, trainers.InitialState());
  const uint64_t state_bytes = initial.TotalBytes();

  SimulationResult result;
  FEDFM_ASSIGN_OR_RETURN(result.fleet, PlanFleet(config, trainers));

  FEDFM_ASSIGN_OR_RETURN(std::unique_ptr<coordinator::Store> store, coordinator::OpenSqliteStore(":memory:"));
  coordinator::ManualClock clock;
  std::unique_ptr<coordinator::SeedPoolReplay> replay;
  if (config.zeroth_order.seed_pool > 0) {
    FEDFM_ASSIGN_OR_RETURN(replay, coordinator::SeedPoolReplay::FromConfig(config, initial));
  }
  const int64_t deadline_ms = std::max<int64_t>(1, std::llround(config.rounds.deadline_s * 1000.0));
  coordinator::RoundEngineOptions eo;
  eo.liveness_ms = kLivenessMs;
  eo.selection_wait_ms = 1;
  eo.poll_interval_ms = 1;
  eo.secagg_phase_ms = KeyPhaseMs(fleet, config, shape, deadline_ms);
  result.secagg_phase_s = static_cast<double>(eo.secagg_phase_ms) / 1000.0;
  // Seed scalars are projected gradients, far larger than deltas: the
  // widest range the fixed point allows for a full round (n * clip * 2^q < 2^31).
  eo.seed_scalar_clip =
      std::min(256.0, 0.5 * std::ldexp(1.0, 31 - config.secagg.fraction_bits) / std::max(1, config.rounds.clients_per_round));
  FEDFM_ASSIGN_OR_RETURN(std::unique_ptr<coordinator::RoundEngine> engine,
                         coordinator::RoundEngine::Create(config, *store, clock, initial, dims, replay.get(), eo));
  result.run_id = engine->run_id();
  const int64_t run_start_ms = clock.NowMs();
  for (int64_t c = 0; c < fleet.num_clients(); ++c) {
    FEDFM_RETURN_IF_ERROR(engine->RegisterClient(SimClientId(c), fleet.of(c).profile.name, fleet.of(c).profile).status());
  }
  result.registry_bytes = fleet.device_of.size() * sizeof(uint16_t) + data.RegistryBytes();

  int workers = options.workers > 0 ? options.workers : config.simulation.threads;
  if (workers <= 0) workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  result.workers = workers;
  Shared shared(config, shape, trainers, *engine, workers);
  shared.state_bytes = state_bytes;
  shared.on_progress = options.on_progress;
  shared.start = start;

  std::unique_ptr<client::Trainer> evaluator;
  if (options.central_eval) {
    FEDFM_ASSIGN_OR_RETURN(evaluator, trainers.Create(Method::kLora, ~uint64_t{0}));
    FEDFM_ASSIGN_OR_RETURN(protocols::EvalReport r, CentralEvaluate(*evaluator, config, initial, data, shared));
    RoundRecord zero;
    zero.round = 0;
    zero.eval_loss = MetricOr(r.metrics, "eval_loss", kNaN);
    if (data.num_labels > 0) zero.eval_accuracy = MetricOr(r.metrics, "eval_accuracy", kNaN);
    zero.wall_total_s = Since(start);
    result.rounds.push_back(zero);
    result.initial_eval_loss = zero.eval_loss;
    if (options.on_round) options.on_round(zero);
  }

  uint64_t slot = 0;
  int empty_slots = 0;
  double rounds_wall = 0;
  int64_t rounds_done = 0;
  EngineProbe probe(*engine);
  while (!engine->finished()) {
    const SteadyClock::time_point round_wall = SteadyClock::now();
    clock.AdvanceMs(kRoundGapMs);
    InProcessLink idle_link(*engine);
    coordinator::RoundEngineStatus st = engine->Status();
    int64_t polled = 0;
    if (!RoundActive(st)) {
      {
        std::lock_guard<std::mutex> lock(shared.mu);
        shared.progress.round = st.round;
        shared.progress.total_rounds = st.total_rounds;
        shared.clients_done = shared.clients_selected = 0;
        shared.Report("select");
      }
      PollOrder order(fleet.num_clients(), seed, slot);
      int64_t c = 0;
      while (order.Draw(&c)) {
        if (!DrawDevice(fleet.of(c), seed, slot, static_cast<uint64_t>(c)).online) continue;
        absl::StatusOr<protocols::PollResponse> r = idle_link.Poll({.client_id = SimClientId(c), .have_model_version = ""});
        if (!r.ok()) return r.status();
        ++polled;
        st = engine->Status();
        if (RoundActive(st) || st.finished) break;
      }
      if (!RoundActive(st) && !st.finished) {
        clock.AdvanceMs(eo.selection_wait_ms);
        FEDFM_RETURN_IF_ERROR(engine->Tick());
        st = engine->Status();
      }
      if (st.finished) break;
      if (!RoundActive(st)) {
        ++slot;
        if (++empty_slots >= kMaxEmptySlots) {
          return absl::FailedPreconditionError(absl::StrCat(
              "no round could start in ", kMaxEmptySlots, " tries (", polled, " clients online at the last): ",
              st.last_failure.empty() ? "too few clients online for rounds.min_clients" : st.last_failure));
        }
        continue;
      }
    }
    empty_slots = 0;

    // --- The round ---------------------------------------------------------
    const int64_t number = st.round;
    const int64_t attempt = st.attempt;
    const bool evaluation = st.evaluation_round;
    const int64_t t0_ms = clock.NowMs();
    VirtualScheduler sched(clock, probe);
    shared.sched = &sched;
    std::vector<std::unique_ptr<ActiveClient>> active;
    for (const std::string& id : st.selected) {
      int64_t index = 0;
      if (!absl::SimpleAtoi(id.substr(4), &index) || index < 0 || index >= fleet.num_clients()) {
        return absl::InternalError(absl::StrCat("the engine selected an unknown client \"", id, "\""));
      }
      auto c = std::make_unique<ActiveClient>();
      c->index = index;
      c->id = id;
      c->device = &fleet.of(index);
      c->draws = DrawDevice(*c->device, seed, slot, static_cast<uint64_t>(index));
      c->start_us = t0_ms * 1000;
      c->actor = sched.Add(c->start_us);
      c->data = data.ClientDataset(index);
      c->live_bytes = ExampleBytes(c->data.train) + ExampleBytes(c->data.eval) + 2 * state_bytes;
      c->transport = std::make_unique<ClientTransport>(*c, shared);
      c->link = std::make_unique<InProcessLink>(*engine, c->transport.get());
      c->trainer = std::make_unique<VirtualTrainer>(*c, shared);
      c->env = std::make_unique<VirtualEnv>(sched, c->actor);
      client::ClientRuntimeOptions ro;
      ro.identity = protocols::EnrollResponse{id, "", engine->run_id()};
      ro.name = c->device->profile.name;
      ro.profile = c->device->profile;
      ro.sequence_start = (slot + 1) << 20;
      ro.max_consecutive_failures = 1;
      ro.secagg_seed = SecAggSeed(seed, slot, static_cast<uint64_t>(index));
      ro.dp_seed = zeroth_order::DeriveSeed(seed, static_cast<uint64_t>(index), 0, kPurposeDpSeed) | 1;
      ro.jitter_seed = zeroth_order::DeriveSeed(seed, static_cast<uint64_t>(index), 0, kPurposeJitter);
      c->runtime = std::make_unique<client::ClientRuntime>(*c->link, *c->trainer, c->data, *c->env, std::move(ro));
      active.push_back(std::move(c));
    }
    {
      std::lock_guard<std::mutex> lock(shared.mu);
      shared.live_clients += static_cast<int64_t>(active.size());
      for (const auto& c : active) shared.live_bytes += c->live_bytes;
      shared.peak_live_clients = std::max(shared.peak_live_clients, shared.live_clients);
      shared.peak_live_bytes = std::max(shared.peak_live_bytes, shared.live_bytes);
      shared.progress.round = number;
      shared.progress.total_rounds = st.total_rounds;
      shared.clients_done = 0;
      shared.clients_selected = static_cast<int64_t>(active.size());
      shared.Report(evaluation ? "evaluate" : "train");
    }
    const double train_wall_before = shared.train_wall_s;
    std::vector<std::thread> threads;
    threads.reserve(active.size());
    for (auto& c : active) threads.emplace_back([&, c = c.get()] { RunClient(*c, shared); });
    const absl::Status driven = sched.Drive();
    for (std::thread& t : threads) t.join();
    shared.sched = nullptr;
    FEDFM_RETURN_IF_ERROR(driven);
    for (const auto& c : active) {
      if (!c->error.ok()) {
        return absl::Status(c->error.code(), absl::StrCat("round ", number, ", client ", c->id, " (",
                                                          c->device->profile.name, "): ", c->error.message()));
      }
    }
    // Serve the deadlines that close the round once no client acts any more.
    for (int guard = 0; guard < 64; ++guard) {
      coordinator::RoundEngineStatus now = engine->Status();
      if (!RoundActive(now) || now.round != number || now.attempt != attempt) break;
      if (now.phase_deadline_ms <= 0) {
        return absl::InternalError(absl::StrCat("round ", number, " is stuck in phase ",
                                                protocols::PhaseName(now.phase), " with no deadline"));
      }
      clock.SetMs(now.phase_deadline_ms);
      FEDFM_RETURN_IF_ERROR(engine->Tick());
    }

    // --- Record it ------------------------------------------------------------
    RoundRecord rec;
    rec.round = number;
    rec.attempt = attempt;
    rec.evaluation = evaluation;
    rec.clients_polled = polled;
    FEDFM_ASSIGN_OR_RETURN(coordinator::RoundRecord stored, store->GetRound(engine->run_id(), number));
    rec.committed = stored.status == coordinator::RoundStatus::kCommitted && stored.attempt == attempt;
    if (!rec.committed) rec.failure = stored.failure_reason.empty() ? engine->Status().last_failure : stored.failure_reason;
    FEDFM_ASSIGN_OR_RETURN(std::vector<coordinator::ParticipantRecord> participants,
                           store->ListParticipants(engine->run_id(), number));
    FEDFM_ASSIGN_OR_RETURN(std::vector<coordinator::MetricRecord> metrics,
                           store->ListMetrics(engine->run_id(), number));
    std::map<std::string, const coordinator::ParticipantRecord*> by_id;
    for (const auto& p : participants) by_id[p.client_id] = &p;
    std::map<std::string, double> client_loss;
    for (const auto& m : metrics) {
      if (m.client_id.empty()) {
        rec.metrics[m.name] = m.value;
      } else if (m.name == "train_loss") {
        client_loss[m.client_id] = m.value;
      }
    }
    std::map<Method, std::pair<double, double>> loss_sums;  // method -> (sum w * loss, sum w)
    std::map<Method, int64_t> trained_count;
    for (const auto& c : active) {
      if (!c->task.has_value()) continue;
      const Method method = c->task->method;
      MethodRound& m = rec.methods[method];
      ++m.selected;
      m.bytes_up += c->traffic.bytes_up;
      m.bytes_down += c->traffic.bytes_down;
      const auto p = by_id.find(c->id);
      const bool uploaded = p != by_id.end() && p->second->status == coordinator::ParticipantStatus::kUploaded;
      if (uploaded) {
        ++m.uploaded;
        const auto l = client_loss.find(c->id);
        if (l != client_loss.end() && std::isfinite(l->second)) {
          const double w = static_cast<double>(std::max<int64_t>(1, p->second->num_examples));
          loss_sums[method].first += w * l->second;
          loss_sums[method].second += w;
        }
      } else if (c->offline) {
        ++m.dropped;
      } else if (c->straggler) {
        ++m.stragglers;
      } else {
        ++m.other;
      }
      if (c->trained) {
        m.compute_virtual_s += c->compute_virtual_s;
        ++trained_count[method];
        m.client_steps += c->steps;
      }
      const MethodChoice choice{.method = method, .lora_rank = c->task->lora_rank, .top_blocks = c->task->top_blocks};
      m.memory_estimate_bytes = std::max<uint64_t>(m.memory_estimate_bytes,
                                                   coordinator::EstimateMemoryBytes(shape, choice));
      rec.peak_memory_bytes = std::max(rec.peak_memory_bytes, c->peak_memory);
      result.client_steps += c->steps;
    }
    for (auto& [method, m] : rec.methods) {
      const auto ls = loss_sums.find(method);
      if (ls != loss_sums.end() && ls->second.second > 0) m.train_loss = ls->second.first / ls->second.second;
      if (trained_count[method] > 0) m.compute_virtual_s /= static_cast<double>(trained_count[method]);
    }
    rec.train_loss = MetricOr(rec.metrics, "train_loss", kNaN);
    if (evaluation) {
      rec.eval_loss = MetricOr(rec.metrics, "eval_loss", kNaN);
      if (data.num_labels > 0) rec.eval_accuracy = MetricOr(rec.metrics, "eval_accuracy", kNaN);
    }
    rec.virtual_start_s = static_cast<double>(t0_ms - run_start_ms) / 1000.0;
    // The commit (or failure) instant: a late message may have moved the
    // clock past it.
    const int64_t end_ms = rec.committed ? stored.committed_at_ms
                                         : (stored.failed_at_ms > 0 ? stored.failed_at_ms : clock.NowMs());
    rec.virtual_end_s = static_cast<double>(end_ms - run_start_ms) / 1000.0;
    if (rec.committed && !evaluation && evaluator != nullptr) {
      {
        std::lock_guard<std::mutex> lock(shared.mu);
        shared.Report("evaluate");
      }
      FEDFM_ASSIGN_OR_RETURN(protocols::ModelSnapshot snapshot, engine->GetModel(engine->Status().model_version));
      FEDFM_ASSIGN_OR_RETURN(protocols::EvalReport r, CentralEvaluate(*evaluator, config, snapshot.state, data, shared));
      rec.eval_loss = MetricOr(r.metrics, "eval_loss", kNaN);
      if (data.num_labels > 0) rec.eval_accuracy = MetricOr(r.metrics, "eval_accuracy", kNaN);
    }
    rec.train_wall_s = shared.train_wall_s - train_wall_before;
    rec.wall_s = Since(round_wall);
    rec.wall_total_s = Since(start);
    result.rounds.push_back(rec);
    if (options.on_round) options.on_round(rec);
    rounds_wall += rec.wall_s;
    ++rounds_done;
    {
      std::lock_guard<std::mutex> lock(shared.mu);
      const coordinator::RoundEngineStatus after = engine->Status();
      const int64_t left = std::max<int64_t>(0, after.total_rounds - (after.finished ? after.total_rounds : number));
      shared.progress.eta_s = rounds_done > 0 ? rounds_wall / static_cast<double>(rounds_done) * left : -1;
      shared.Report(after.finished ? "done" : "select");
    }
    ++slot;
  }

  const coordinator::RoundEngineStatus final_status = engine->Status();
  result.finish_reason = final_status.finish_reason;
  FEDFM_ASSIGN_OR_RETURN(protocols::ModelSnapshot final_model, engine->GetModel(final_status.model_version));
  result.final_state = std::move(final_model.state);
  result.virtual_time_s = result.rounds.empty() ? 0.0 : result.rounds.back().virtual_end_s;
  for (auto it = result.rounds.rbegin(); it != result.rounds.rend(); ++it) {
    if (it->committed && std::isfinite(it->eval_loss)) {
      result.final_eval_loss = it->eval_loss;
      break;
    }
  }
  result.peak_live_clients = shared.peak_live_clients;
  result.peak_live_client_bytes = shared.peak_live_bytes;
  result.wall_s = Since(start);
  result.train_wall_s = shared.train_wall_s;
  result.eval_wall_s = shared.eval_wall_s;
  result.train_cpu_s = shared.train_cpu_s;
  result.eval_cpu_s = shared.eval_cpu_s;
  result.process_cpu_s = CpuSeconds(CLOCK_PROCESS_CPUTIME_ID) - cpu_start;
  return result;
}

}  // namespace fedfm::simulation
