#include "coordinator/round_engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <mutex>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "aggregation/secagg/fixed_point.h"
#include "aggregation/secagg/round_config.h"
#include "aggregation/secagg/server.h"
#include "coordinator/ids.h"
#include "nlohmann/json.hpp"
#include "protocols/check.h"
#include "protocols/config/config.h"
#include "protocols/optimizer_state.h"
#include "protocols/safetensors.h"
#include "protocols/status_macros.h"
#include "protocols/tensor_codec.h"
#include "zeroth_order/philox.h"
#include "zeroth_order/seed_pool.h"

namespace fedfm::coordinator {
namespace {

using protocols::Binding;
using protocols::Coverage;
using protocols::DeviceProfile;
using protocols::Method;
using protocols::Phase;
using protocols::PollKind;
using protocols::SecAggTask;
using protocols::Task;
using protocols::Tensor;
using protocols::TensorCoverage;
using protocols::TensorMap;
using protocols::Update;
using protocols::UpdateKind;

// Purposes of the engine's seed derivations (zeroth_order::DeriveSeed's
// counter word 3), distinct from the zeroth-order module's.
constexpr uint32_t kPurposeSelect = 0x53454C45u;       // "SELE": client sampling of a round attempt
constexpr uint32_t kPurposeSecAggRound = 0x53414752u;  // "SAGR": SecAgg round id of a group
constexpr uint32_t kPurposeSecAggGraph = 0x53414747u;  // "SAGG": SecAgg graph seed words
constexpr uint32_t kPurposeClientRound = 0x43524E44u;  // "CRND": a client's round seed
constexpr uint32_t kPurposeDpNoise = 0x44504E53u;      // "DPNS": central DP noise of a round attempt

// FNV-1a, to fold a client id into a derivation.
uint32_t Hash32(const std::string& s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}

// SplitMix64: the sampling order's generator (fully specified, unlike
// std::shuffle, so a selection replays on every platform).
uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

const char* MethodKey(Method m) {
  switch (m) {
    case Method::kAuto: return "auto";
    case Method::kLora: return "lora";
    case Method::kPartial: return "partial";
    case Method::kZerothOrder: return "zo";
  }
  return "auto";
}

absl::StatusOr<Method> MethodFromKey(const std::string& s) {
  for (Method m : {Method::kAuto, Method::kLora, Method::kPartial, Method::kZerothOrder}) {
    if (s == MethodKey(m)) return m;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown method \"", s, "\""));
}

std::string ProfileToJson(const DeviceProfile& p) {
  nlohmann::json j;
  j["name"] = p.name;
  j["accelerator"] = p.accelerator;
  j["memory_bytes"] = p.memory_bytes;
  j["flops_per_s"] = p.flops_per_s;
  j["uplink_bytes_per_s"] = p.uplink_bytes_per_s;
  j["downlink_bytes_per_s"] = p.downlink_bytes_per_s;
  j["availability"] = p.availability;
  j["dropout"] = p.dropout;
  nlohmann::json methods = nlohmann::json::array();
  for (Method m : p.methods) methods.push_back(MethodKey(m));
  j["methods"] = methods;
  return j.dump();
}

absl::StatusOr<DeviceProfile> ProfileFromJson(const std::string& text, const std::string& client_id) {
  DeviceProfile p;
  if (text.empty()) return p;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    p.name = j.value("name", "");
    p.accelerator = j.value("accelerator", "cpu");
    p.memory_bytes = j.value("memory_bytes", uint64_t{0});
    p.flops_per_s = j.value("flops_per_s", 0.0);
    p.uplink_bytes_per_s = j.value("uplink_bytes_per_s", 0.0);
    p.downlink_bytes_per_s = j.value("downlink_bytes_per_s", 0.0);
    p.availability = j.value("availability", 1.0);
    p.dropout = j.value("dropout", 0.0);
    if (j.contains("methods")) {
      for (const auto& m : j.at("methods")) {
        FEDFM_ASSIGN_OR_RETURN(Method method, MethodFromKey(m.get<std::string>()));
        p.methods.push_back(method);
      }
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(
        absl::StrCat("device profile of client \"", client_id, "\" is not valid JSON: ", e.what()));
  }
  return p;
}

// "layers.<i>." inside a tensor name: the block index, or -1.
int BlockIndex(const std::string& name) {
  size_t pos = 0;
  while ((pos = name.find("layers.", pos)) != std::string::npos) {
    if (pos > 0 && name[pos - 1] != '.' && name[pos - 1] != '/') {
      pos += 7;
      continue;
    }
    size_t end = pos + 7;
    int value = 0;
    bool digits = false;
    while (end < name.size() && name[end] >= '0' && name[end] <= '9') {
      value = value * 10 + (name[end] - '0');
      digits = true;
      ++end;
    }
    if (digits && end < name.size() && name[end] == '.') return value;
    pos += 7;
  }
  return -1;
}

bool Contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

bool IsSubCoverage(const Coverage& inner, const Coverage& outer, std::string* why) {
  for (const TensorCoverage& c : inner.tensors) {
    const TensorCoverage* o = outer.Find(c.name);
    if (o == nullptr) {
      *why = absl::StrCat("covers tensor \"", c.name, "\", which its task does not");
      return false;
    }
    if (o->rank_dim < 0) continue;
    if (c.rank_dim != o->rank_dim || c.rank > o->rank || c.rank < 1) {
      *why = absl::StrCat("covers tensor \"", c.name, "\" as (dim ", c.rank_dim, ", rank ", c.rank,
                          "), beyond its task's (dim ", o->rank_dim, ", rank ", o->rank, ")");
      return false;
    }
  }
  return true;
}

int64_t PhaseOrder(Phase p) { return static_cast<int64_t>(p); }

const char* DashboardPhase(Phase p, bool finished) {
  if (finished) return "finished";
  switch (p) {
    case Phase::kIdle: return "idle";
    case Phase::kAdvertiseKeys: return "secagg_advertise";
    case Phase::kShareKeys: return "secagg_share";
    case Phase::kCollect: return "train";
    case Phase::kUnmask: return "secagg_unmask";
    case Phase::kEvaluate: return "evaluate";
    default: return protocols::PhaseName(p);
  }
}

}  // namespace

absl::StatusOr<Coverage> DefaultCoverage(const TensorMap& global_state, const MethodChoice& choice,
                                         const protocols::RunConfig& config, const protocols::ModelDims& dims) {
  Coverage c;
  const int64_t first_block = dims.num_layers - choice.top_blocks;
  for (const auto& [name, t] : global_state) {
    const bool lora_a = Contains(name, ".lora_A");
    const bool lora_b = Contains(name, ".lora_B");
    const bool lora = lora_a || lora_b;
    const int block = BlockIndex(name);
    // FFA-LoRA: A stays at its seeded initialisation; no method trains it.
    if (lora_a && config.lora.freeze_a) continue;
    auto lora_slice = [&](int rank) {
      const int dim = lora_a ? 0 : 1;
      const int64_t size = t.shape().size() > static_cast<size_t>(dim) ? t.shape()[dim] : 0;
      if (rank <= 0 || rank >= size) return TensorCoverage{name, -1, 0};
      return TensorCoverage{name, dim, rank};
    };
    switch (choice.method) {
      case Method::kZerothOrder:
        if (!protocols::IsOptimizerState(name)) c.tensors.push_back({name, -1, 0});
        break;
      case Method::kLora:
      case Method::kAuto:
        if (lora) {
          c.tensors.push_back(lora_slice(choice.lora_rank));
        } else if (block < 0) {
          c.tensors.push_back({name, -1, 0});
        }
        break;
      case Method::kPartial:
        if (block < 0 && !lora) {
          c.tensors.push_back({name, -1, 0});
        } else if (block >= first_block) {
          if (config.partial.full_weights && !lora) c.tensors.push_back({name, -1, 0});
          if (!config.partial.full_weights && lora) c.tensors.push_back(lora_slice(choice.lora_rank));
        }
        break;
    }
  }
  if (c.tensors.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("method \"", MethodKey(choice.method), "\" with rank ",
                                                   choice.lora_rank, " and k = ", choice.top_blocks,
                                                   " covers no tensor of the global state"));
  }
  return c;
}

class RoundEngine::Impl {
 public:
  Impl(const protocols::RunConfig& config, Store& store, Clock& clock, const protocols::ModelDims& dims,
       aggregation::SeedReplay* replay, RoundEngineOptions options)
      : config_(config), store_(store), clock_(clock), dims_(dims), replay_(replay), options_(std::move(options)) {
    shape_ = MakeWorkloadShape(config_, dims_);
    const int e = config_.rounds.eval_every;
    total_rounds_ = config_.run.rounds + (e > 0 ? config_.run.rounds / e : 0);
    wall_start_ = std::chrono::steady_clock::now();
  }

  absl::Status Init(TensorMap initial_state);

  // --- Client calls (see the header) ---
  absl::StatusOr<protocols::EnrollResponse> Enroll(const protocols::EnrollRequest& request);
  absl::StatusOr<protocols::EnrollResponse> RegisterClient(const std::string& client_id, const std::string& name,
                                                           const DeviceProfile& profile);
  absl::StatusOr<std::string> CreateToken(int64_t uses, int64_t expires_in_ms);
  absl::StatusOr<std::vector<ClientInfo>> ListClients();
  absl::Status RevokeClient(const std::string& client_id);
  bool IsRevoked(const std::string& client_id) const {
    std::lock_guard<std::mutex> lock(mu_);
    return revoked_.contains(client_id);
  }
  absl::StatusOr<protocols::PollResponse> Poll(const protocols::PollRequest& request);
  absl::StatusOr<protocols::ModelSnapshot> GetModel(const std::string& version);
  absl::Status SubmitUpdate(const Binding& binding, const Update& update);
  absl::Status SubmitKeys(const Binding& binding, const secagg::ClientKeys& keys);
  absl::StatusOr<Routed<secagg::NeighborKeys>> FetchNeighborKeys(const Binding& binding);
  absl::Status SubmitShares(const Binding& binding, const secagg::ClientShares& shares);
  absl::StatusOr<Routed<secagg::RoutedShares>> FetchRoutedShares(const Binding& binding);
  absl::Status SubmitMaskedInput(const Binding& binding, const secagg::MaskedInput& input,
                                 const protocols::UploadInfo& info);
  absl::StatusOr<Routed<secagg::UnmaskRequest>> FetchUnmaskRequest(const Binding& binding);
  absl::Status SubmitUnmask(const Binding& binding, const secagg::UnmaskResponse& response);
  absl::Status Report(const Binding& binding, const protocols::EvalReport& report);
  absl::Status Tick();
  RoundEngineStatus Status();
  bool finished() {
    std::lock_guard<std::mutex> lock(mu_);
    return finished_;
  }
  InMemoryDashboardSource& dashboard() { return dashboard_; }
  const std::string& run_id() const { return run_id_; }

 private:
  struct Participant {
    std::string id;
    MethodChoice choice;
    Task task;
    int group = -1;          // index into Round::groups; -1 in plaintext rounds
    bool active = true;      // still expected to answer
    bool done = false;       // its part of the round is over
    bool submitting = false;  // its update is being added (outside mu_)
    bool contributed = false;  // its update / report counts
    ParticipantStatus status = ParticipantStatus::kSelected;
    std::string reason;
    uint64_t num_examples = 0;
    std::map<std::string, double> metrics;
    std::map<std::string, double> eval_metrics;
    uint64_t eval_examples = 0;
    int64_t bytes_up = 0;
    int64_t bytes_down = 0;
    bool download_counted = false;
    // SecAgg.
    bool answered = false;   // in the current phase
    bool masked = false;     // its masked input was accepted
    std::optional<secagg::NeighborKeys> neighbor_keys;
    std::optional<secagg::RoutedShares> routed_shares;
    std::optional<secagg::UnmaskRequest> unmask_request;
    bool fetched_keys = false, fetched_shares = false, fetched_unmask = false;
  };

  struct Group {
    SecAggTask::Group kind = SecAggTask::Group::kDense;
    std::vector<size_t> members;  // participant indices; position = SecAgg index
    secagg::RoundConfig config;
    std::unique_ptr<secagg::SecAggServer> server;
    std::optional<secagg::FixedPointCodec> codec;
    std::vector<std::string> layout;
    bool aborted = false;
    std::string abort_reason;
    std::optional<secagg::AggregateResult> result;
    // Each group is a SecAgg+ instance of its own, so its phases close on
    // its own members: a member of one group that drops out does not hold
    // up the other group. kDone once unmasked or abandoned.
    Phase phase = Phase::kAdvertiseKeys;
    int64_t deadline_ms = 0;
  };

  struct Round {
    int64_t number = 0;
    int64_t attempt = 1;
    bool eval = false;
    bool secagg = false;
    // Plaintext and evaluation rounds: the phase and its deadline. SecAgg+
    // rounds: the earliest phase of the groups not done, and the earliest
    // of their deadlines (SyncSecAggPhase).
    Phase phase = Phase::kIdle;
    int64_t started_ms = 0;
    int64_t collect_deadline_ms = 0;
    int64_t phase_deadline_ms = 0;
    std::vector<Participant> participants;  // ascending by id
    std::map<std::string, size_t> by_id;
    std::vector<uint64_t> seed_pool;
    std::vector<Group> groups;
    std::unique_ptr<aggregation::Aggregator> aggregator;
    // Updates being added to the aggregator outside mu_: the round does not
    // close (and the aggregator stays) until they are back.
    int in_flight = 0;
  };

  // A client chosen for a round with its assignment.
  struct Pick {
    std::string id;
    MethodChoice choice;
    Coverage coverage;
    bool seed_scalars = false;
  };

  bool IsEvalRound(int64_t n) const {
    const int e = config_.rounds.eval_every;
    return e > 0 && n % (e + 1) == 0;
  }
  // Training rounds among 1..n.
  int64_t TrainingRoundsUpTo(int64_t n) const {
    const int e = config_.rounds.eval_every;
    return e > 0 ? n - n / (e + 1) : n;
  }
  // The run config of round n: partial.top_blocks grown by the progressive schedule.
  protocols::RunConfig RoundConfigFor(int64_t n) const;
  uint64_t WeightUnit() const {
    if (config_.dp.enabled) return 1;
    const int64_t unit = int64_t{config_.train.local_steps} * config_.train.batch_size *
                         std::max(1, config_.train.grad_accumulation);
    return static_cast<uint64_t>(std::max<int64_t>(1, unit));
  }

  absl::Status CommitInitial(const TensorMap& state, int64_t now);
  absl::Status Resume(const RunRecord& run, const TensorMap& initial_state);
  absl::StatusOr<protocols::ModelSnapshot> LoadSnapshot(const std::string& version);
  void RebuildHistory(const RunRecord& run);

  // Checks outside the lock: run id, the client's existence and revocation,
  // and the sequence number (one durable store write).
  absl::Status PreCheck(const Binding& binding);
  // Under the lock: the client's participant record for a message of `phase`.
  absl::StatusOr<Participant*> Locate(const Binding& binding, Phase phase, int64_t now);
  // Under the lock: the participant for a fetch (no phase check).
  absl::StatusOr<Participant*> LocateForFetch(const Binding& binding);
  // A SecAgg message of the client's in `phase`: the binding, the message's
  // index (`what` names the message), `check` (may be empty), then the
  // group's server takes it; the client has answered and its bytes count up.
  template <typename M>
  absl::Status SubmitToGroup(const Binding& binding, Phase phase, const M& message, const char* what,
                             absl::Status (secagg::SecAggServer::*accept)(const M&),
                             const std::function<absl::Status(const Participant&)>& check = nullptr);
  // A SecAgg message routed to the client once the round is past `phase`:
  // none yet (retry after a poll interval) until then, Aborted when the
  // client was left out. Counts its bytes down the first time it is fetched.
  template <typename T>
  absl::StatusOr<Routed<T>> FetchRouted(const Binding& binding, Phase phase, std::optional<T> Participant::*message,
                                        bool Participant::*fetched, const char* left_out_reason);
  absl::StatusOr<Group*> GroupOf(Participant* p);

  absl::Status AdvanceLocked(int64_t now);
  absl::Status MaybeStartRound(int64_t now, bool* started);
  absl::StatusOr<std::vector<Pick>> Select(int64_t number, int64_t attempt, const protocols::RunConfig& rc,
                                           std::vector<std::string> available, std::string* why);
  absl::Status SetUpSecAgg(Round& round);
  // The phase the participant is in: its SecAgg group's, else the round's.
  Phase PhaseOf(const Participant& p) const;
  int64_t DeadlineOf(const Participant& p) const;
  // Plaintext and evaluation rounds.
  bool AllAnswered() const;
  absl::Status ClosePhase(int64_t now);
  // SecAgg+ rounds, one group at a time.
  bool GroupAnswered(const Group& g) const;
  void CloseGroupPhase(Group& g, int64_t now);
  void SyncSecAggPhase();
  // Drops `p` when it is still in and has not answered by the deadline.
  void DropIfUnanswered(Participant& p, const char* what);
  absl::Status FinishRound(int64_t now);
  absl::Status FailRoundLocked(int64_t now, const std::string& reason);
  std::vector<ParticipantRecord> ParticipantRecords() const;
  std::vector<MetricRecord> MetricRecords(std::map<std::string, double>* round_metrics) const;
  void Reject(Participant& p, const absl::Status& status);
  void PublishStatusLocked(int64_t now);
  struct LastPoll;
  // Whether client `id` polled within liveness_ms (and, when
  // `since_last_round`, since the last round attempt ended: selection takes
  // only those) and is not revoked; how many clients are.
  bool AvailableLocked(const std::string& id, const LastPoll& poll, int64_t now, bool since_last_round) const;
  int64_t AvailableCountLocked(int64_t now, bool since_last_round) const;
  Task MakeTask(const Round& round, const Pick& pick, const protocols::RunConfig& rc) const;

  const protocols::RunConfig& config_;
  Store& store_;
  Clock& clock_;
  const protocols::ModelDims dims_;
  aggregation::SeedReplay* const replay_;
  const RoundEngineOptions options_;
  // options_.make_aggregator, else aggregation::MakeAggregator.
  const AggregatorFactory make_aggregator_ =
      options_.make_aggregator ? options_.make_aggregator : AggregatorFactory(aggregation::MakeAggregator);
  WorkloadShape shape_;
  int64_t total_rounds_ = 0;
  std::chrono::steady_clock::time_point wall_start_;

  std::string run_id_;
  int64_t run_created_ms_ = 0;
  std::unique_ptr<aggregation::ServerOptimizer> optimizer_;
  InMemoryDashboardSource dashboard_;

  mutable std::mutex mu_;
  protocols::ModelSnapshot current_;
  std::set<std::string> known_versions_;  // model versions of this run's committed rounds
  int64_t last_committed_ = -1;
  bool finished_ = false;
  int64_t phase_changes_ = 0;
  std::string finish_reason_;
  std::string last_failure_;
  int64_t enough_since_ms_ = -1;
  int64_t selection_blocked_until_ms_ = 0;
  // Round attempts ended (committed or failed) so far. A client is
  // selectable only when it polled since the last attempt ended (a poll
  // during a round was for that round).
  int64_t rounds_ended_ = 0;
  struct LastPoll {
    int64_t ms = 0;
    int64_t rounds_ended = 0;  // rounds_ended_ at the poll
  };
  std::map<std::string, LastPoll> last_poll_;
  std::map<std::string, DeviceProfile> profiles_;
  std::set<std::string> revoked_;
  int64_t clients_enrolled_ = 0;
  std::unique_ptr<Round> round_;
};

// ---------------------------------------------------------------------------
// Construction and resume

absl::Status RoundEngine::Impl::Init(TensorMap initial_state) {
  FEDFM_RETURN_IF_ERROR(protocols::ValidateRunConfig(config_));
  if (initial_state.empty()) return absl::InvalidArgumentError("the initial global state is empty");
  FEDFM_ASSIGN_OR_RETURN(optimizer_, aggregation::MakeServerOptimizer(config_.aggregation));
  if (config_.train.method == Method::kZerothOrder && config_.zeroth_order.seed_pool > 0 && replay_ == nullptr) {
    return absl::InvalidArgumentError(
        "train.method = \"zo\" with zeroth_order.seed_pool > 0 needs a SeedReplay to expand seed scalars");
  }
  if (config_.secagg.enabled) {
    const int n = config_.rounds.clients_per_round + 1;  // a lone group member may be topped up
    absl::Status s = secagg::CheckNoOverflow(n, config_.secagg.clip, config_.secagg.fraction_bits);
    if (s.ok() && options_.seed_scalar_clip > 0) {
      s = secagg::CheckNoOverflow(n, options_.seed_scalar_clip, config_.secagg.fraction_bits);
    }
    if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("secagg: ", s.message()));
  }
  {
    // The round's aggregator must be constructible for this config.
    aggregation::RoundContext ctx;
    ctx.optimizer = optimizer_.get();
    ctx.dp = &config_.dp;
    absl::StatusOr<std::unique_ptr<aggregation::Aggregator>> probe =
        make_aggregator_(config_.aggregation, initial_state, ctx);
    if (!probe.ok()) return probe.status();
  }
  FEDFM_ASSIGN_OR_RETURN(std::vector<ClientRecord> clients, store_.ListClients());
  clients_enrolled_ = static_cast<int64_t>(clients.size());
  for (const ClientRecord& c : clients) {
    if (c.revoked) revoked_.insert(c.id);
  }

  const int64_t now = clock_.NowMs();
  run_id_ = options_.run_id;
  if (run_id_.empty()) {
    FEDFM_ASSIGN_OR_RETURN(run_id_, NewRunId());
  }
  absl::StatusOr<RunRecord> run = store_.GetRun(run_id_);
  if (run.ok()) return Resume(*run, initial_state);
  if (run.status().code() != absl::StatusCode::kNotFound) return run.status();
  RunRecord record{.id = run_id_,
                   .name = config_.run.name,
                   .config_toml = protocols::RunConfigToToml(config_),
                   .created_at_ms = now,
                   .status = RunStatus::kRunning};
  FEDFM_RETURN_IF_ERROR(store_.CreateRun(record));
  run_created_ms_ = now;
  std::lock_guard<std::mutex> lock(mu_);
  FEDFM_RETURN_IF_ERROR(CommitInitial(initial_state, now));
  PublishStatusLocked(now);
  return absl::OkStatus();
}

absl::Status RoundEngine::Impl::CommitInitial(const TensorMap& state, int64_t now) {
  FEDFM_RETURN_IF_ERROR(store_.StartRound(run_id_, 0, now).status());
  auto bytes = std::make_shared<std::vector<std::byte>>(protocols::SerializeSafetensors(state));
  const TensorMap opt_state = optimizer_->State();
  std::vector<std::byte> opt_bytes;
  if (!opt_state.empty()) opt_bytes = protocols::SerializeSafetensors(opt_state);
  RoundCommit commit;
  commit.run_id = run_id_;
  commit.round = 0;
  commit.committed_at_ms = now;
  commit.model = *bytes;
  commit.optimizer_state = opt_bytes;
  FEDFM_ASSIGN_OR_RETURN(RoundRecord record, store_.CommitRound(commit));
  FEDFM_ASSIGN_OR_RETURN(protocols::Safetensors parsed, protocols::ParseSafetensors(*bytes, bytes));
  current_ = {record.model_version, std::move(parsed.tensors), bytes};
  known_versions_.insert(record.model_version);
  last_committed_ = 0;
  return absl::OkStatus();
}

absl::StatusOr<protocols::ModelSnapshot> RoundEngine::Impl::LoadSnapshot(const std::string& version) {
  FEDFM_ASSIGN_OR_RETURN(ModelVersion mv, store_.LoadModelVersion(version));
  auto bytes = std::make_shared<std::vector<std::byte>>(mv.bytes.begin(), mv.bytes.end());
  FEDFM_ASSIGN_OR_RETURN(protocols::Safetensors parsed, protocols::ParseSafetensors(*bytes, bytes));
  return protocols::ModelSnapshot{version, std::move(parsed.tensors), bytes};
}

absl::Status RoundEngine::Impl::Resume(const RunRecord& run, const TensorMap& initial_state) {
  run_created_ms_ = run.created_at_ms;
  std::lock_guard<std::mutex> lock(mu_);
  FEDFM_ASSIGN_OR_RETURN(std::optional<RoundRecord> latest, store_.LatestCommittedRound(run_id_));
  if (!latest.has_value()) {
    if (run.status != RunStatus::kRunning) {
      return absl::FailedPreconditionError(
          absl::StrCat("run \"", run_id_, "\" is ", RunStatusName(run.status), " and has no committed round"));
    }
    FEDFM_RETURN_IF_ERROR(CommitInitial(initial_state, clock_.NowMs()));
  } else {
    FEDFM_ASSIGN_OR_RETURN(current_, LoadSnapshot(latest->model_version));
    // The stored state must be the one this engine was built for.
    if (current_.state.names() != initial_state.names()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "run \"", run_id_, "\": the stored global state holds tensors [", absl::StrJoin(current_.state.names(), ", "),
          "], the engine was given [", absl::StrJoin(initial_state.names(), ", "), "]"));
    }
    for (const auto& [name, t] : initial_state) {
      const Tensor& stored = current_.state.at(name);
      if (stored.shape() != t.shape() || stored.dtype() != t.dtype()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "run \"", run_id_, "\": stored tensor \"", name, "\" is ", protocols::DTypeName(stored.dtype()), " ",
            protocols::ShapeString(stored.shape()), ", the engine was given ", protocols::DTypeName(t.dtype()), " ",
            protocols::ShapeString(t.shape())));
      }
    }
    if (!latest->optimizer_state.empty()) {
      FEDFM_ASSIGN_OR_RETURN(protocols::ModelSnapshot opt, LoadSnapshot(latest->optimizer_state));
      FEDFM_RETURN_IF_ERROR(optimizer_->LoadState(opt.state));
    }
    last_committed_ = latest->round;
  }
  FEDFM_ASSIGN_OR_RETURN(std::vector<RoundRecord> rounds, store_.ListRounds(run_id_));
  for (const RoundRecord& r : rounds) {
    if (r.status == RoundStatus::kCommitted) known_versions_.insert(r.model_version);
  }
  RebuildHistory(run);
  if (run.status != RunStatus::kRunning) {
    finished_ = true;
    finish_reason_ = absl::StrCat("run is ", RunStatusName(run.status));
  } else if (last_committed_ >= total_rounds_) {
    finished_ = true;
    finish_reason_ = absl::StrCat("completed ", config_.run.rounds, " training rounds");
    FEDFM_RETURN_IF_ERROR(store_.SetRunStatus(run_id_, RunStatus::kFinished));
  }
  PublishStatusLocked(clock_.NowMs());
  return absl::OkStatus();
}

void RoundEngine::Impl::RebuildHistory(const RunRecord& run) {
  absl::StatusOr<std::vector<RoundRecord>> rounds = store_.ListRounds(run_id_);
  if (!rounds.ok()) return;
  for (const RoundRecord& r : *rounds) {
    if (r.status != RoundStatus::kCommitted || r.round == 0) continue;
    RoundSummary s;
    s.round = r.round;
    absl::StatusOr<std::vector<MetricRecord>> metrics = store_.ListMetrics(run_id_, r.round);
    if (metrics.ok()) {
      for (const MetricRecord& m : *metrics) {
        if (m.client_id.empty()) s.metrics[m.name] = m.value;
      }
    }
    absl::StatusOr<std::vector<ParticipantRecord>> parts = store_.ListParticipants(run_id_, r.round);
    if (parts.ok()) {
      for (const ParticipantRecord& p : *parts) {
        if (p.status != ParticipantStatus::kUploaded) continue;
        MethodStats& m = s.methods[p.method];
        ++m.participants;
        m.bytes_up += p.bytes_up;
        m.bytes_down += p.bytes_down;
      }
    }
    s.duration_s = (r.committed_at_ms - r.started_at_ms) / 1000.0;
    s.virtual_time_s = (r.committed_at_ms - run.created_at_ms) / 1000.0;
    s.wall_time_s = s.virtual_time_s;
    dashboard_.AddRound(s);
  }
}

// ---------------------------------------------------------------------------
// Enrollment and admin

absl::StatusOr<protocols::EnrollResponse> RoundEngine::Impl::Enroll(const protocols::EnrollRequest& request) {
  const int64_t now = clock_.NowMs();
  FEDFM_ASSIGN_OR_RETURN(std::string secret, NewClientSecret());
  ClientRecord record;
  record.name = request.name;
  record.profile_json = ProfileToJson(request.profile);
  record.enrolled_at_ms = now;
  record.last_seen_ms = now;
  record.auth_secret = secret;
  absl::Status s;
  for (int tries = 0; tries < 3; ++tries) {  // a fresh id on the (unlikely) collision
    FEDFM_ASSIGN_OR_RETURN(record.id, NewClientId());
    s = store_.EnrollClient(HashToken(request.token), now, record);
    if (s.code() != absl::StatusCode::kAlreadyExists) break;
  }
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  profiles_[record.id] = request.profile;
  ++clients_enrolled_;
  return protocols::EnrollResponse{record.id, secret, run_id_};
}

absl::StatusOr<protocols::EnrollResponse> RoundEngine::Impl::RegisterClient(const std::string& client_id,
                                                                            const std::string& name,
                                                                            const DeviceProfile& profile) {
  const int64_t now = clock_.NowMs();
  FEDFM_ASSIGN_OR_RETURN(std::string secret, NewClientSecret());
  ClientRecord record{.id = client_id,
                      .name = name,
                      .profile_json = ProfileToJson(profile),
                      .enrolled_at_ms = now,
                      .last_seen_ms = now,
                      .auth_secret = secret};
  if (record.id.empty()) {
    FEDFM_ASSIGN_OR_RETURN(record.id, NewClientId());
  }
  FEDFM_RETURN_IF_ERROR(store_.AddClient(record));
  std::lock_guard<std::mutex> lock(mu_);
  profiles_[record.id] = profile;
  ++clients_enrolled_;
  return protocols::EnrollResponse{record.id, secret, run_id_};
}

absl::StatusOr<std::string> RoundEngine::Impl::CreateToken(int64_t uses, int64_t expires_in_ms) {
  if (uses < 1 || expires_in_ms < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("a token needs uses >= 1 and expires_in_ms >= 1, got ", uses, " and ", expires_in_ms));
  }
  const int64_t now = clock_.NowMs();
  FEDFM_ASSIGN_OR_RETURN(std::string token, NewEnrollmentToken());
  FEDFM_RETURN_IF_ERROR(store_.AddEnrollmentToken({.token_hash = HashToken(token),
                                                    .uses_left = uses,
                                                    .expires_at_ms = now + expires_in_ms,
                                                    .created_at_ms = now}));
  return token;
}

absl::StatusOr<std::vector<ClientInfo>> RoundEngine::Impl::ListClients() {
  FEDFM_ASSIGN_OR_RETURN(std::vector<ClientRecord> records, store_.ListClients());
  std::vector<ClientInfo> out;
  for (const ClientRecord& r : records) {
    ClientInfo info;
    info.client_id = r.id;
    info.name = r.name;
    info.revoked = r.revoked;
    info.enrolled_at_ms = r.enrolled_at_ms;
    info.last_seen_ms = r.last_seen_ms;
    absl::StatusOr<DeviceProfile> profile = ProfileFromJson(r.profile_json, r.id);
    if (profile.ok()) info.profile = *profile;
    out.push_back(std::move(info));
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (ClientInfo& info : out) {
    auto it = last_poll_.find(info.client_id);
    if (it != last_poll_.end()) info.last_seen_ms = std::max(info.last_seen_ms, it->second.ms);
  }
  return out;
}

absl::Status RoundEngine::Impl::RevokeClient(const std::string& client_id) {
  FEDFM_RETURN_IF_ERROR(store_.RevokeClient(client_id));
  std::lock_guard<std::mutex> lock(mu_);
  revoked_.insert(client_id);
  last_poll_.erase(client_id);
  if (round_ != nullptr) {
    auto it = round_->by_id.find(client_id);
    if (it != round_->by_id.end()) {
      Participant& p = round_->participants[it->second];
      // An update already being summed (submitting) stays: it cannot be
      // taken back out of the sum, and its record must say uploaded.
      if (!p.done && !p.submitting && p.active) {
        p.active = false;
        p.status = ParticipantStatus::kDropped;
        p.reason = "revoked during the round";
      }
    }
  }
  const int64_t now = clock_.NowMs();
  absl::Status s = AdvanceLocked(now);
  PublishStatusLocked(now);
  return s;
}

// ---------------------------------------------------------------------------
// Message checks

absl::Status RoundEngine::Impl::PreCheck(const Binding& binding) {
  if (binding.run_id != run_id_) {
    return absl::InvalidArgumentError(
        absl::StrCat("message for run \"", binding.run_id, "\"; this coordinator runs \"", run_id_, "\""));
  }
  absl::Status s = store_.AcceptSequence(binding.client_id, binding.sequence, clock_.NowMs());
  if (s.ok()) return s;
  switch (s.code()) {
    case absl::StatusCode::kNotFound:
      return absl::NotFoundError(absl::StrCat("unknown client \"", binding.client_id, "\""));
    case absl::StatusCode::kPermissionDenied:
      return absl::PermissionDeniedError(absl::StrCat("client \"", binding.client_id, "\" is revoked"));
    case absl::StatusCode::kFailedPrecondition:
      return absl::FailedPreconditionError(absl::StrCat("replayed sequence number ", binding.sequence,
                                                        " from client \"", binding.client_id, "\": ", s.message()));
    default:
      return s;
  }
}

absl::StatusOr<RoundEngine::Impl::Participant*> RoundEngine::Impl::LocateForFetch(const Binding& binding) {
  if (binding.run_id != run_id_) {
    return absl::InvalidArgumentError(
        absl::StrCat("message for run \"", binding.run_id, "\"; this coordinator runs \"", run_id_, "\""));
  }
  if (revoked_.contains(binding.client_id)) {
    return absl::PermissionDeniedError(absl::StrCat("client \"", binding.client_id, "\" is revoked"));
  }
  if (round_ == nullptr) {
    return absl::AbortedError(absl::StrCat("stale round: message for round ", binding.round,
                                           ", no round is in progress (next: ", last_committed_ + 1, ")"));
  }
  if (binding.round != round_->number) {
    return absl::AbortedError(absl::StrCat("stale round: message for round ", binding.round, ", round ",
                                           round_->number, " is in progress"));
  }
  auto it = round_->by_id.find(binding.client_id);
  if (it == round_->by_id.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("client \"", binding.client_id, "\" is not selected for round ", round_->number));
  }
  return &round_->participants[it->second];
}

absl::StatusOr<RoundEngine::Impl::Participant*> RoundEngine::Impl::Locate(const Binding& binding, Phase phase,
                                                                          int64_t now) {
  FEDFM_ASSIGN_OR_RETURN(Participant * p, LocateForFetch(binding));
  if (binding.phase != phase) {
    return absl::FailedPreconditionError(absl::StrCat("wrong phase: the binding says ",
                                                      protocols::PhaseName(binding.phase), ", this message belongs to ",
                                                      protocols::PhaseName(phase)));
  }
  const bool secagg_phase = phase == Phase::kAdvertiseKeys || phase == Phase::kShareKeys || phase == Phase::kUnmask;
  if (secagg_phase && !round_->secagg) {
    return absl::FailedPreconditionError(
        absl::StrCat("wrong phase: round ", round_->number, " does not use secure aggregation"));
  }
  if (p->group >= 0 && round_->groups[p->group].aborted) {
    return absl::AbortedError(absl::StrCat("late: client \"", p->id, "\" is out of round ", round_->number, " (",
                                           p->reason, ")"));
  }
  const Phase current = PhaseOf(*p);
  if (current != phase) {
    const bool late = current != Phase::kEvaluate && phase != Phase::kEvaluate &&
                      PhaseOrder(current) > PhaseOrder(phase);
    if (late) {
      return absl::AbortedError(absl::StrCat("late: phase ", protocols::PhaseName(phase), " of round ",
                                             round_->number, " has closed"));
    }
    return absl::FailedPreconditionError(absl::StrCat("wrong phase: round ", round_->number, " is in phase ",
                                                      protocols::PhaseName(current), ", not ",
                                                      protocols::PhaseName(phase)));
  }
  if (p->done || p->answered || p->submitting) {
    return absl::AlreadyExistsError(absl::StrCat("client \"", p->id, "\" already sent its ",
                                                 protocols::PhaseName(phase), " message for round ", round_->number));
  }
  if (!p->active) {
    return absl::AbortedError(absl::StrCat("late: client \"", p->id, "\" is out of round ", round_->number, " (",
                                           p->reason, ")"));
  }
  if (now >= DeadlineOf(*p)) {
    return absl::AbortedError(absl::StrCat("late: the deadline of phase ", protocols::PhaseName(phase),
                                           " of round ", round_->number, " has passed"));
  }
  return p;
}

absl::StatusOr<RoundEngine::Impl::Group*> RoundEngine::Impl::GroupOf(Participant* p) {
  if (p->group < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("round ", round_->number, " does not use secure aggregation"));
  }
  Group& g = round_->groups[p->group];
  if (g.aborted) {
    return absl::AbortedError(absl::StrCat("the SecAgg group of client \"", p->id, "\" was abandoned: ",
                                           g.abort_reason));
  }
  return &g;
}

void RoundEngine::Impl::Reject(Participant& p, const absl::Status& status) {
  p.done = true;
  p.active = false;
  p.status = ParticipantStatus::kRejected;
  p.reason = std::string(status.message());
}

// ---------------------------------------------------------------------------
// Round lifecycle

protocols::RunConfig RoundEngine::Impl::RoundConfigFor(int64_t n) const {
  protocols::RunConfig rc = config_;
  const protocols::PartialOptions& p = config_.partial;
  if (p.progressive_every > 0) {
    const int64_t t = std::max<int64_t>(0, TrainingRoundsUpTo(n) - 1);
    const int64_t max_k = p.progressive_max > 0 ? p.progressive_max : std::max<int64_t>(1, dims_.num_layers);
    const int64_t k = std::min<int64_t>(max_k, p.top_blocks + (t / p.progressive_every) * p.progressive_step);
    rc.partial.top_blocks = static_cast<int>(std::max<int64_t>(1, k));
  }
  return rc;
}

bool RoundEngine::Impl::AvailableLocked(const std::string& id, const LastPoll& poll, int64_t now,
                                        bool since_last_round) const {
  return now - poll.ms <= options_.liveness_ms && !revoked_.contains(id) &&
         (!since_last_round || poll.rounds_ended == rounds_ended_);
}

int64_t RoundEngine::Impl::AvailableCountLocked(int64_t now, bool since_last_round) const {
  int64_t n = 0;
  for (const auto& [id, poll] : last_poll_) n += AvailableLocked(id, poll, now, since_last_round) ? 1 : 0;
  return n;
}

absl::StatusOr<std::vector<RoundEngine::Impl::Pick>> RoundEngine::Impl::Select(
    int64_t number, int64_t attempt, const protocols::RunConfig& rc, std::vector<std::string> available,
    std::string* why) {
  std::sort(available.begin(), available.end());
  uint64_t state = zeroth_order::DeriveSeed(config_.run.seed, static_cast<uint64_t>(number),
                                            static_cast<uint32_t>(attempt), kPurposeSelect);
  for (size_t i = available.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(SplitMix64(state) % i);
    std::swap(available[i - 1], available[j]);
  }
  const bool eval = IsEvalRound(number);
  const bool seed_pool = config_.zeroth_order.seed_pool > 0;
  std::vector<std::string> skipped;
  auto assign = [&](const std::string& id) -> std::optional<Pick> {
    auto pit = profiles_.find(id);
    const DeviceProfile profile = pit == profiles_.end() ? DeviceProfile{} : pit->second;
    absl::StatusOr<MethodChoice> choice = options_.method_rule ? options_.method_rule(id, profile, rc, shape_)
                                                               : ChooseMethod(profile, rc, shape_);
    if (!choice.ok()) {
      if (!eval) {
        skipped.push_back(absl::StrCat(id, ": ", choice.status().message()));
        return std::nullopt;
      }
      choice = MethodChoice{.method = Method::kZerothOrder};  // evaluation needs forward passes only
    }
    Pick pick;
    pick.id = id;
    pick.choice = *choice;
    pick.seed_scalars = choice->method == Method::kZerothOrder && seed_pool;
    if (pick.seed_scalars && replay_ == nullptr && !eval) {
      skipped.push_back(absl::StrCat(id, ": seed-scalar updates need a SeedReplay"));
      return std::nullopt;
    }
    absl::StatusOr<Coverage> coverage = options_.coverage_rule
                                            ? options_.coverage_rule(current_.state, *choice, rc, dims_)
                                            : DefaultCoverage(current_.state, *choice, rc, dims_);
    if (!coverage.ok()) {
      skipped.push_back(absl::StrCat(id, ": ", coverage.status().message()));
      return std::nullopt;
    }
    pick.coverage = *std::move(coverage);
    return pick;
  };
  std::vector<Pick> picks;
  size_t next = 0;
  const size_t want = static_cast<size_t>(config_.rounds.clients_per_round);
  for (; next < available.size() && picks.size() < want; ++next) {
    if (std::optional<Pick> p = assign(available[next])) picks.push_back(*std::move(p));
  }
  if (config_.secagg.enabled && !eval) {
    // A SecAgg group of one would reveal its member's update: top it up with
    // the next available client of its kind; a zeroth-order client alone in
    // the seed-scalar group sends a dense update instead (it joins the dense
    // group); a client alone in the dense group is left out.
    for (bool kind : {true, false}) {
      const auto count = std::count_if(picks.begin(), picks.end(), [&](const Pick& p) { return p.seed_scalars == kind; });
      if (count != 1) continue;
      bool topped = false;
      for (size_t i = next; i < available.size() && !topped; ++i) {
        std::optional<Pick> p = assign(available[i]);
        if (p.has_value() && p->seed_scalars == kind) {
          picks.push_back(*std::move(p));
          available.erase(available.begin() + static_cast<std::ptrdiff_t>(i));
          topped = true;
        }
      }
      if (!topped) {
        auto it = std::find_if(picks.begin(), picks.end(), [&](const Pick& p) { return p.seed_scalars == kind; });
        if (kind) {
          it->seed_scalars = false;
          continue;
        }
        skipped.push_back(absl::StrCat(it->id, ": alone in its SecAgg group (",
                                       kind ? "seed scalars" : "dense", ")"));
        picks.erase(it);
      }
    }
  }
  if (!skipped.empty()) *why = absl::StrJoin(skipped, "; ");
  std::sort(picks.begin(), picks.end(), [](const Pick& a, const Pick& b) { return a.id < b.id; });
  return picks;
}

Task RoundEngine::Impl::MakeTask(const Round& round, const Pick& pick, const protocols::RunConfig& rc) const {
  Task t;
  t.round = round.number;
  t.evaluate_only = round.eval;
  t.method = pick.choice.method;
  t.lora_rank = pick.choice.lora_rank;
  t.top_blocks = pick.choice.top_blocks;
  t.partial_full_weights = rc.partial.full_weights;
  t.local_steps = rc.train.local_steps;
  t.batch_size = rc.train.batch_size;
  t.grad_accumulation = rc.train.grad_accumulation;
  t.seq_len = rc.data.seq_len;
  t.learning_rate = rc.train.learning_rate;
  t.weight_decay = rc.train.weight_decay;
  t.grad_clip = rc.train.grad_clip;
  t.fedprox_mu = rc.train.fedprox_mu;
  if (pick.seed_scalars) t.seed_pool = round.seed_pool;
  t.zo_epsilon = rc.zeroth_order.epsilon;
  t.zo_learning_rate = rc.zeroth_order.learning_rate;
  t.zo_perturbations = rc.zeroth_order.perturbations;
  t.round_seed = zeroth_order::DeriveSeed(config_.run.seed, static_cast<uint64_t>(round.number), Hash32(pick.id),
                                          kPurposeClientRound);
  t.coverage = pick.coverage;
  t.model_version = current_.version;
  t.dp = rc.dp;
  t.dp_noise_clients = std::max(1, rc.rounds.min_clients);
  return t;
}

absl::Status RoundEngine::Impl::MaybeStartRound(int64_t now, bool* started) {
  *started = false;
  std::vector<std::string> available;
  for (const auto& [id, poll] : last_poll_) {
    if (AvailableLocked(id, poll, now, /*since_last_round=*/true)) available.push_back(id);
  }
  const auto n = static_cast<int64_t>(available.size());
  if (n >= config_.rounds.min_clients) {
    if (enough_since_ms_ < 0) enough_since_ms_ = now;
  } else {
    enough_since_ms_ = -1;
    return absl::OkStatus();
  }
  const bool ready = n >= config_.rounds.clients_per_round || now - enough_since_ms_ >= options_.selection_wait_ms;
  if (!ready || now < selection_blocked_until_ms_) return absl::OkStatus();

  const int64_t number = last_committed_ + 1;
  int64_t attempt = 1;
  absl::StatusOr<RoundRecord> prior = store_.GetRound(run_id_, number);
  if (prior.ok()) {
    attempt = prior->attempt + 1;
  } else if (prior.status().code() != absl::StatusCode::kNotFound) {
    return prior.status();
  }
  const protocols::RunConfig rc = RoundConfigFor(number);
  std::string why;
  FEDFM_ASSIGN_OR_RETURN(std::vector<Pick> picks, Select(number, attempt, rc, available, &why));
  if (static_cast<int64_t>(picks.size()) < config_.rounds.min_clients) {
    last_failure_ = absl::StrCat("round ", number, ": only ", picks.size(), " of ", n,
                                 " available clients can take part, min_clients is ", config_.rounds.min_clients,
                                 why.empty() ? "" : absl::StrCat(" (", why, ")"));
    selection_blocked_until_ms_ = now + options_.selection_wait_ms;
    return absl::OkStatus();
  }

  FEDFM_ASSIGN_OR_RETURN(RoundRecord record, store_.StartRound(run_id_, number, now));
  auto round = std::make_unique<Round>();
  round->number = number;
  round->attempt = record.attempt;
  round->eval = IsEvalRound(number);
  round->secagg = config_.secagg.enabled && !round->eval;
  round->started_ms = now;
  const auto deadline_ms = static_cast<int64_t>(std::llround(config_.rounds.deadline_s * 1000.0));
  round->collect_deadline_ms = now + deadline_ms;
  bool any_seed = false;
  for (const Pick& p : picks) any_seed |= p.seed_scalars && !round->eval;
  if (any_seed) {
    round->seed_pool =
        zeroth_order::SeedPool::ForRound(config_.run.seed, static_cast<uint64_t>(number), config_.zeroth_order.seed_pool)
            .seeds();
  }
  for (const Pick& pick : picks) {
    Participant p;
    p.id = pick.id;
    p.choice = pick.choice;
    round->by_id[p.id] = round->participants.size();
    round->participants.push_back(std::move(p));
  }
  for (size_t i = 0; i < picks.size(); ++i) round->participants[i].task = MakeTask(*round, picks[i], rc);

  if (!round->eval) {
    aggregation::RoundContext ctx{
        .optimizer = optimizer_.get(),
        .min_updates = config_.rounds.min_clients,
        .seed_pool = round->seed_pool,
        .seed_replay = replay_,
        .dp = &config_.dp,
        .noise_seed = zeroth_order::DeriveSeed(config_.run.seed, static_cast<uint64_t>(number),
                                               static_cast<uint32_t>(round->attempt), kPurposeDpNoise)};
    FEDFM_ASSIGN_OR_RETURN(round->aggregator, make_aggregator_(config_.aggregation, current_.state, ctx));
  }
  round_ = std::move(round);
  if (round_->secagg) {
    absl::Status s = SetUpSecAgg(*round_);
    if (!s.ok()) return FailRoundLocked(now, absl::StrCat("secagg setup: ", s.message()));
    const int64_t phase_ms = options_.secagg_phase_ms > 0 ? options_.secagg_phase_ms : deadline_ms;
    for (Group& g : round_->groups) g.deadline_ms = std::min(now + phase_ms, round_->collect_deadline_ms);
    SyncSecAggPhase();
  } else {
    round_->phase = round_->eval ? Phase::kEvaluate : Phase::kCollect;
    round_->phase_deadline_ms = round_->collect_deadline_ms;
  }
  enough_since_ms_ = -1;
  *started = true;
  return absl::OkStatus();
}

absl::Status RoundEngine::Impl::SetUpSecAgg(Round& round) {
  const int64_t now_unit = static_cast<int64_t>(WeightUnit());
  for (SecAggTask::Group kind : {SecAggTask::Group::kDense, SecAggTask::Group::kSeedScalars}) {
    Group g;
    g.kind = kind;
    for (size_t i = 0; i < round.participants.size(); ++i) {
      const bool seeds = !round.participants[i].task.seed_pool.empty();
      if (seeds == (kind == SecAggTask::Group::kSeedScalars)) g.members.push_back(i);
    }
    if (g.members.empty()) continue;
    int64_t length = 0;
    if (kind == SecAggTask::Group::kDense) {
      std::set<std::string> covered;
      for (size_t i : g.members) {
        for (const TensorCoverage& c : round.participants[i].task.coverage.tensors) covered.insert(c.name);
      }
      for (const auto& [name, t] : current_.state) {
        if (!covered.contains(name)) continue;
        g.layout.push_back(name);
        length += t.numel();
      }
    } else {
      length = static_cast<int64_t>(round.seed_pool.size());
    }
    const uint32_t group_tag = static_cast<uint32_t>(round.attempt * 2 + static_cast<int>(kind));
    secagg::SecAggParams params;
    params.round_id =
        zeroth_order::DeriveSeed(config_.run.seed, static_cast<uint64_t>(round.number), group_tag, kPurposeSecAggRound);
    params.num_clients = static_cast<int>(g.members.size());
    params.num_neighbors = config_.secagg.neighbors;
    params.threshold = config_.secagg.threshold;
    params.vector_length = length;
    for (int w = 0; w < 4; ++w) {
      const uint64_t word = zeroth_order::DeriveSeed(config_.run.seed, static_cast<uint64_t>(round.number) * 8 + w,
                                                     group_tag, kPurposeSecAggGraph);
      for (int b = 0; b < 8; ++b) params.graph_seed[w * 8 + b] = static_cast<uint8_t>(word >> (8 * b));
    }
    if (params.num_neighbors >= params.num_clients) params.num_neighbors = 0;
    FEDFM_ASSIGN_OR_RETURN(g.config, secagg::MakeRoundConfig(params));
    const double clip = kind == SecAggTask::Group::kSeedScalars && options_.seed_scalar_clip > 0
                            ? options_.seed_scalar_clip
                            : config_.secagg.clip;
    FEDFM_ASSIGN_OR_RETURN(secagg::FixedPointCodec codec,
                           secagg::FixedPointCodec::Create(clip, config_.secagg.fraction_bits, params.num_clients));
    g.codec = codec;
    FEDFM_ASSIGN_OR_RETURN(g.server,
                           secagg::SecAggServer::Create(g.config, {.num_threads = std::max(1, options_.secagg_threads)}));
    const int group_index = static_cast<int>(round.groups.size());
    for (size_t idx = 0; idx < g.members.size(); ++idx) {
      Participant& p = round.participants[g.members[idx]];
      p.group = group_index;
      SecAggTask& s = p.task.secagg;
      s.enabled = true;
      s.group = kind;
      s.round_id = params.round_id;
      s.index = static_cast<uint32_t>(idx);
      s.num_clients = params.num_clients;
      s.num_neighbors = g.config.num_neighbors();
      s.threshold = params.threshold;
      s.threshold_count = g.config.threshold;
      s.vector_length = length;
      s.graph_seed = params.graph_seed;
      s.clip = clip;
      s.fraction_bits = config_.secagg.fraction_bits;
      s.layout = g.layout;
      s.weight_unit = static_cast<uint64_t>(now_unit);
      s.weight_by_examples = !config_.dp.enabled;
    }
    round.groups.push_back(std::move(g));
  }
  return absl::OkStatus();
}

Phase RoundEngine::Impl::PhaseOf(const Participant& p) const {
  return p.group >= 0 ? round_->groups[p.group].phase : round_->phase;
}

int64_t RoundEngine::Impl::DeadlineOf(const Participant& p) const {
  return p.group >= 0 ? round_->groups[p.group].deadline_ms : round_->phase_deadline_ms;
}

bool RoundEngine::Impl::AllAnswered() const {
  for (const Participant& p : round_->participants) {
    if (p.active && !p.done) return false;
  }
  return true;
}

bool RoundEngine::Impl::GroupAnswered(const Group& g) const {
  for (size_t i : g.members) {
    const Participant& p = round_->participants[i];
    if (!p.active || p.done) continue;
    if (g.phase == Phase::kUnmask && !p.masked) continue;
    if (!p.answered) return false;
  }
  return true;
}

void RoundEngine::Impl::SyncSecAggPhase() {
  Round& r = *round_;
  r.phase = Phase::kDone;
  r.phase_deadline_ms = 0;
  for (const Group& g : r.groups) {
    if (g.phase == Phase::kDone) continue;
    if (PhaseOrder(g.phase) < PhaseOrder(r.phase)) r.phase = g.phase;
    if (r.phase_deadline_ms == 0 || g.deadline_ms < r.phase_deadline_ms) r.phase_deadline_ms = g.deadline_ms;
  }
}

void RoundEngine::Impl::DropIfUnanswered(Participant& p, const char* what) {
  if (!p.active || p.done || p.answered) return;
  p.active = false;
  p.status = ParticipantStatus::kDropped;
  p.reason = absl::StrCat("dropped out: no ", what, " before the deadline of round ", round_->number);
}

absl::Status RoundEngine::Impl::ClosePhase(int64_t now) {
  FEDFM_CHECK_MSG(round_->phase == Phase::kCollect || round_->phase == Phase::kEvaluate,
                  "ClosePhase in a phase that has no deadline");
  ++phase_changes_;
  const char* what = round_->phase == Phase::kCollect ? "update" : "report";
  for (Participant& p : round_->participants) DropIfUnanswered(p, what);
  return FinishRound(now);
}

void RoundEngine::Impl::CloseGroupPhase(Group& g, int64_t now) {
  Round& r = *round_;
  ++phase_changes_;
  auto abort_group = [&](const std::string& reason) {
    g.aborted = true;
    g.abort_reason = reason;
    g.phase = Phase::kDone;
    for (size_t i : g.members) {
      Participant& p = r.participants[i];
      if (p.status == ParticipantStatus::kSelected || p.active) {
        p.active = false;
        p.status = ParticipantStatus::kDropped;
        p.reason = absl::StrCat("SecAgg group abandoned: ", reason);
      }
    }
  };
  auto next_phase = [&](Phase phase, int64_t deadline) {
    g.phase = phase;
    g.deadline_ms = deadline;
    for (size_t i : g.members) r.participants[i].answered = false;
  };
  // Members the group's server left out of its next step.
  auto exclude_unrouted = [&](auto Participant::*routed, const char* reason) {
    for (size_t i : g.members) {
      Participant& p = r.participants[i];
      if (p.active && !(p.*routed).has_value()) {
        p.active = false;
        p.status = ParticipantStatus::kDropped;
        p.reason = reason;
      }
    }
  };
  const int64_t phase_ms = options_.secagg_phase_ms > 0
                               ? options_.secagg_phase_ms
                               : static_cast<int64_t>(std::llround(config_.rounds.deadline_s * 1000.0));
  auto drop_unanswered = [&](const char* what) {
    for (size_t i : g.members) DropIfUnanswered(r.participants[i], what);
  };
  switch (g.phase) {
    case Phase::kAdvertiseKeys: {
      drop_unanswered("keys");
      absl::StatusOr<std::vector<secagg::NeighborKeys>> keys = g.server->CloseAdvertise();
      if (!keys.ok()) return abort_group(std::string(keys.status().message()));
      for (secagg::NeighborKeys& k : *keys) r.participants[g.members[k.index]].neighbor_keys = std::move(k);
      exclude_unrouted(&Participant::neighbor_keys, "excluded by SecAgg: too few of its neighbours advertised keys");
      return next_phase(Phase::kShareKeys, std::min(now + phase_ms, r.collect_deadline_ms));
    }
    case Phase::kShareKeys: {
      drop_unanswered("key shares");
      absl::StatusOr<std::vector<secagg::RoutedShares>> shares = g.server->CloseShareKeys();
      if (!shares.ok()) return abort_group(std::string(shares.status().message()));
      for (secagg::RoutedShares& s : *shares) r.participants[g.members[s.index]].routed_shares = std::move(s);
      exclude_unrouted(&Participant::routed_shares, "excluded by SecAgg: too few of its neighbours shared keys");
      return next_phase(Phase::kCollect, std::max(now, r.collect_deadline_ms));
    }
    case Phase::kCollect: {
      drop_unanswered("masked input");
      const auto masked = std::count_if(g.members.begin(), g.members.end(),
                                        [&](size_t i) { return r.participants[i].masked; });
      if (masked < 2) {
        // The sum of one input is that input: do not unmask it.
        return abort_group(absl::StrCat(masked, " masked input(s) arrived; a sum of fewer than 2 would reveal an "
                                                "update"));
      }
      absl::StatusOr<std::vector<secagg::UnmaskRequest>> requests = g.server->CloseMaskedInput();
      if (!requests.ok()) return abort_group(std::string(requests.status().message()));
      for (secagg::UnmaskRequest& q : *requests) r.participants[g.members[q.index]].unmask_request = std::move(q);
      return next_phase(Phase::kUnmask, now + phase_ms);
    }
    case Phase::kUnmask: {
      for (size_t i : g.members) {
        Participant& p = r.participants[i];
        // Its input still counts; it just did not help unmask.
        if (p.active && p.masked && !p.answered) p.active = false;
      }
      absl::StatusOr<secagg::AggregateResult> result = g.server->Finish();
      if (!result.ok()) return abort_group(std::string(result.status().message()));
      g.result = *std::move(result);
      g.phase = Phase::kDone;
      return;
    }
    default:
      FEDFM_CHECK_MSG(false, "CloseGroupPhase in a phase that has no deadline");
  }
}

absl::Status RoundEngine::Impl::FinishRound(int64_t now) {
  Round& r = *round_;
  r.phase = Phase::kDone;
  TensorMap next_state = current_.state;
  const TensorMap opt_before = optimizer_->State();
  if (r.eval) {
    int reports = 0;
    for (Participant& p : r.participants) {
      if (p.eval_examples > 0) {
        ++reports;
        p.contributed = true;
        p.status = ParticipantStatus::kUploaded;
      }
    }
    if (reports == 0) return FailRoundLocked(now, "no client reported evaluation metrics before the deadline");
  } else {
    for (Group& g : r.groups) {
      if (!g.result.has_value()) continue;
      aggregation::SecureSum sum;
      sum.kind = g.kind == SecAggTask::Group::kDense ? UpdateKind::kDense : UpdateKind::kSeedScalars;
      sum.weight_unit = WeightUnit();
      std::vector<float> decoded(g.result->sum.size());
      g.codec->Decode(g.result->sum, decoded);
      if (sum.kind == UpdateKind::kDense) {
        int64_t offset = 0;
        for (const std::string& name : g.layout) {
          const Tensor& shape_of = current_.state.at(name);
          const int64_t n = shape_of.numel();
          sum.delta.Set(name, Tensor::FromFloats(shape_of.shape(),
                                                 std::span<const float>(decoded).subspan(offset, n)));
          offset += n;
        }
      } else {
        sum.seed_scalars = std::move(decoded);
      }
      for (uint32_t index : g.result->included) {
        Participant& p = r.participants[g.members[index]];
        sum.contributors.push_back({p.id, p.num_examples, p.task.coverage});
      }
      absl::Status s = r.aggregator->AcceptSecureSum(sum);
      for (uint32_t index : g.result->included) {
        Participant& p = r.participants[g.members[index]];
        p.done = true;
        if (s.ok()) {
          p.contributed = true;
          p.status = ParticipantStatus::kUploaded;
          p.reason.clear();
        } else {
          p.status = ParticipantStatus::kRejected;
          p.reason = absl::StrCat("secure sum refused: ", s.message());
        }
      }
    }
    absl::StatusOr<TensorMap> next = r.aggregator->Finish();
    if (!next.ok()) return FailRoundLocked(now, std::string(next.status().message()));
    next_state = *std::move(next);
  }
  for (Participant& p : r.participants) {
    if (!p.contributed && p.status == ParticipantStatus::kSelected) {
      p.status = ParticipantStatus::kDropped;
      if (p.reason.empty()) p.reason = "no contribution";
    }
  }

  auto bytes = std::make_shared<std::vector<std::byte>>(protocols::SerializeSafetensors(next_state));
  const TensorMap opt_state = optimizer_->State();
  std::vector<std::byte> opt_bytes;
  if (!opt_state.empty()) opt_bytes = protocols::SerializeSafetensors(opt_state);
  std::map<std::string, double> round_metrics;
  RoundCommit commit{.run_id = run_id_,
                     .round = r.number,
                     .committed_at_ms = now,
                     .model = *bytes,
                     .optimizer_state = opt_bytes,
                     .participants = ParticipantRecords(),
                     .metrics = MetricRecords(&round_metrics)};
  absl::StatusOr<RoundRecord> record = store_.CommitRound(commit);
  absl::StatusOr<protocols::Safetensors> parsed =
      record.ok() ? protocols::ParseSafetensors(*bytes, bytes) : absl::StatusOr<protocols::Safetensors>(record.status());
  if (!parsed.ok()) {
    // Nothing of this round is applied: the optimizer steps again on the retry.
    if (!opt_before.empty()) FEDFM_CHECK(optimizer_->LoadState(opt_before).ok());
    absl::Status fail = FailRoundLocked(now, absl::StrCat("commit failed: ", parsed.status().message()));
    return fail.ok() ? parsed.status() : fail;
  }
  current_ = {record->model_version, std::move(parsed->tensors), bytes};
  known_versions_.insert(record->model_version);
  last_committed_ = r.number;

  RoundSummary summary;
  summary.round = r.number;
  summary.metrics = round_metrics;
  for (const Participant& p : r.participants) {
    if (!p.contributed) continue;
    MethodStats& m = summary.methods[p.choice.method];
    ++m.participants;
    m.bytes_up += p.bytes_up;
    m.bytes_down += p.bytes_down;
  }
  summary.duration_s = (now - r.started_ms) / 1000.0;
  summary.virtual_time_s = (now - run_created_ms_) / 1000.0;
  summary.wall_time_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start_).count();
  dashboard_.AddRound(summary);

  round_.reset();
  ++rounds_ended_;
  last_failure_.clear();
  const std::string& target = config_.rounds.target_metric;
  auto metric = round_metrics.find(target);
  if (!target.empty() && metric != round_metrics.end() && std::isfinite(metric->second)) {
    const bool lower = target.find("loss") != std::string::npos;
    const double v = metric->second, goal = config_.rounds.target_value;
    if (lower ? v <= goal : v >= goal) {
      finished_ = true;
      finish_reason_ = absl::StrCat("target ", target, lower ? " <= " : " >= ", goal, " reached at round ",
                                    last_committed_, " (", v, ")");
    }
  }
  if (!finished_ && last_committed_ >= total_rounds_) {
    finished_ = true;
    finish_reason_ = absl::StrCat("completed ", config_.run.rounds, " training rounds");
  }
  if (finished_) FEDFM_RETURN_IF_ERROR(store_.SetRunStatus(run_id_, RunStatus::kFinished));
  return absl::OkStatus();
}

absl::Status RoundEngine::Impl::FailRoundLocked(int64_t now, const std::string& reason) {
  Round& r = *round_;
  for (Participant& p : r.participants) {
    if (p.status == ParticipantStatus::kSelected && !p.contributed) {
      p.status = ParticipantStatus::kDropped;
      if (p.reason.empty()) p.reason = "no contribution";
    }
  }
  RoundFailure failure{.run_id = run_id_,
                       .round = r.number,
                       .failed_at_ms = now,
                       .reason = reason,
                       .participants = ParticipantRecords(),
                       .metrics = {}};
  last_failure_ = absl::StrCat("round ", r.number, " attempt ", r.attempt, ": ", reason);
  round_.reset();
  ++rounds_ended_;
  return store_.FailRound(failure);
}

std::vector<ParticipantRecord> RoundEngine::Impl::ParticipantRecords() const {
  std::vector<ParticipantRecord> out;
  for (const Participant& p : round_->participants) {
    ParticipantRecord rec;
    rec.client_id = p.id;
    rec.method = p.choice.method;
    const bool adapter = p.choice.method == Method::kLora ||
                         (p.choice.method == Method::kPartial && !config_.partial.full_weights);
    rec.rank = adapter ? p.choice.lora_rank : 0;
    rec.status = p.status;
    rec.reason = p.reason;
    rec.num_examples = static_cast<int64_t>(round_->eval ? p.eval_examples : p.num_examples);
    rec.bytes_up = p.bytes_up;
    rec.bytes_down = p.bytes_down;
    out.push_back(std::move(rec));
  }
  return out;
}

std::vector<MetricRecord> RoundEngine::Impl::MetricRecords(std::map<std::string, double>* round_metrics) const {
  std::vector<MetricRecord> out;
  std::map<std::string, std::pair<double, double>> weighted;  // name -> (Σ w·v, Σ w)
  int uploaded = 0, dropped = 0, rejected = 0;
  uint64_t examples = 0;
  for (const Participant& p : round_->participants) {
    std::map<std::string, double> mine = p.metrics;
    for (const auto& [name, v] : p.eval_metrics) mine[name] = v;
    for (const auto& [name, v] : mine) out.push_back({name, v, p.id});
    if (p.contributed) {
      for (const auto& [name, v] : p.metrics) {
        auto& [sum, w] = weighted[name];
        sum += static_cast<double>(p.num_examples) * v;
        w += static_cast<double>(p.num_examples);
      }
    }
    if (p.eval_examples > 0) {
      for (const auto& [name, v] : p.eval_metrics) {
        auto& [sum, w] = weighted[name];
        sum += static_cast<double>(p.eval_examples) * v;
        w += static_cast<double>(p.eval_examples);
      }
    }
    uploaded += p.status == ParticipantStatus::kUploaded;
    dropped += p.status == ParticipantStatus::kDropped;
    rejected += p.status == ParticipantStatus::kRejected;
    if (p.contributed && !round_->eval) examples += p.num_examples;
  }
  std::map<std::string, double>& rm = *round_metrics;
  for (const auto& [name, sw] : weighted) {
    if (sw.second > 0) rm[name] = sw.first / sw.second;
  }
  rm["clients_uploaded"] = uploaded;
  rm["clients_dropped"] = dropped;
  rm["clients_rejected"] = rejected;
  if (!round_->eval) rm["num_examples"] = static_cast<double>(examples);
  for (const auto& [name, v] : rm) out.push_back({name, v, ""});
  return out;
}

absl::Status RoundEngine::Impl::AdvanceLocked(int64_t now) {
  for (int guard = 0; guard < 64; ++guard) {
    if (finished_) return absl::OkStatus();
    if (round_ == nullptr) {
      bool started = false;
      FEDFM_RETURN_IF_ERROR(MaybeStartRound(now, &started));
      if (!started) return absl::OkStatus();
      continue;
    }
    if (round_->secagg) {
      bool closed = false;
      for (Group& g : round_->groups) {
        if (g.phase == Phase::kDone || (now < g.deadline_ms && !GroupAnswered(g))) continue;
        CloseGroupPhase(g, now);
        closed = true;
      }
      SyncSecAggPhase();
      if (round_->phase == Phase::kDone) {
        FEDFM_RETURN_IF_ERROR(FinishRound(now));
        continue;
      }
      if (!closed) return absl::OkStatus();
      continue;
    }
    if (!AllAnswered() && now < round_->phase_deadline_ms) return absl::OkStatus();
    // An update accepted before the deadline is still being added: the
    // submitter advances the round when it is back.
    if (round_->in_flight > 0) return absl::OkStatus();
    FEDFM_RETURN_IF_ERROR(ClosePhase(now));
  }
  return absl::OkStatus();
}

void RoundEngine::Impl::PublishStatusLocked(int64_t now) {
  DashboardStatus s;
  s.run_id = run_id_;
  s.run_name = config_.run.name;
  s.round = round_ != nullptr ? round_->number : std::min(last_committed_ + (finished_ ? 0 : 1), total_rounds_);
  s.total_rounds = total_rounds_;
  s.phase = DashboardPhase(round_ != nullptr ? round_->phase : Phase::kIdle, finished_);
  s.clients_connected = AvailableCountLocked(now, /*since_last_round=*/false);
  s.clients_enrolled = clients_enrolled_;
  s.model_version = current_.version;
  if (round_ != nullptr) {
    for (const Participant& p : round_->participants) ++s.participants[p.choice.method];
  }
  dashboard_.UpdateStatus([&](DashboardStatus& status) {
    std::map<std::string, double> last = std::move(status.last_metrics);
    status = s;
    status.last_metrics = std::move(last);
  });
}

// ---------------------------------------------------------------------------
// Client calls

absl::StatusOr<protocols::PollResponse> RoundEngine::Impl::Poll(const protocols::PollRequest& request) {
  absl::StatusOr<ClientRecord> client = store_.GetClient(request.client_id);
  if (!client.ok()) {
    if (client.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(absl::StrCat("unknown client \"", request.client_id, "\""));
    }
    return client.status();
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (client->revoked) {
    revoked_.insert(client->id);
    return absl::PermissionDeniedError(absl::StrCat("client \"", request.client_id, "\" is revoked"));
  }
  const int64_t now = clock_.NowMs();
  last_poll_[client->id] = {now, rounds_ended_};
  if (!profiles_.contains(client->id)) {
    FEDFM_ASSIGN_OR_RETURN(profiles_[client->id], ProfileFromJson(client->profile_json, client->id));
  }
  absl::Status advanced = AdvanceLocked(now);
  PublishStatusLocked(now);
  if (!advanced.ok()) return advanced;

  protocols::PollResponse response;
  response.model_version = current_.version;
  if (finished_) {
    response.kind = PollKind::kStop;
    response.reason = finish_reason_;
    return response;
  }
  response.kind = PollKind::kWait;
  response.retry_after_ms = options_.poll_interval_ms;
  if (round_ == nullptr) {
    const int64_t available = AvailableCountLocked(now, /*since_last_round=*/true);
    response.reason = last_failure_.empty() ? absl::StrCat("waiting for clients: ", available, " available, round ",
                                                           last_committed_ + 1, " needs ", config_.rounds.min_clients)
                                            : last_failure_;
    return response;
  }
  auto it = round_->by_id.find(client->id);
  if (it == round_->by_id.end()) {
    response.reason = absl::StrCat("not selected for round ", round_->number);
    return response;
  }
  Participant& p = round_->participants[it->second];
  // A SecAgg client that has sent its unmask answer, or whose group is done
  // while the other group is not, has done its part though the round stays
  // open: answering kTrain would restart its round, and each restart would
  // be refused as late until the round ends.
  const Phase phase = PhaseOf(p);
  const bool part_done = (phase == Phase::kUnmask && p.answered) || phase == Phase::kDone;
  if (!p.active || p.done || part_done) {
    response.reason = p.done || part_done ? absl::StrCat("round ", round_->number, ": done")
                                         : absl::StrCat("round ", round_->number, ": ", p.reason);
    return response;
  }
  if (!p.download_counted && request.have_model_version != current_.version) {
    p.download_counted = true;
    p.bytes_down += static_cast<int64_t>(current_.safetensors->size());
  }
  response.kind = PollKind::kTrain;
  response.binding = {run_id_, round_->number, p.id, phase, 0};
  response.task = p.task;
  response.deadline_ms = round_->collect_deadline_ms;
  return response;
}

absl::StatusOr<protocols::ModelSnapshot> RoundEngine::Impl::GetModel(const std::string& version) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (version == current_.version) return current_;
    if (!known_versions_.contains(version)) {
      return absl::NotFoundError(absl::StrCat("run \"", run_id_, "\" has no model version \"", version, "\""));
    }
  }
  return LoadSnapshot(version);
}

absl::Status RoundEngine::Impl::SubmitUpdate(const Binding& binding, const Update& update) {
  FEDFM_RETURN_IF_ERROR(PreCheck(binding));
  std::unique_lock<std::mutex> lock(mu_);
  int64_t now = clock_.NowMs();
  FEDFM_ASSIGN_OR_RETURN(Participant * p, Locate(binding, Phase::kCollect, now));
  if (round_->secagg) {
    return absl::FailedPreconditionError(absl::StrCat(
        "wrong phase: round ", round_->number, " uses secure aggregation; send a masked input, not an update"));
  }
  absl::Status status = [&]() -> absl::Status {
    if (update.client_id != binding.client_id) {
      return absl::InvalidArgumentError(absl::StrCat("update names client \"", update.client_id,
                                                     "\" but the binding names \"", binding.client_id, "\""));
    }
    const bool want_seeds = !p->task.seed_pool.empty();
    if ((update.kind == UpdateKind::kSeedScalars) != want_seeds) {
      return absl::InvalidArgumentError(absl::StrCat("update from client \"", p->id, "\" is ",
                                                     update.kind == UpdateKind::kDense ? "dense" : "seed scalars",
                                                     ", its task asks for ", want_seeds ? "seed scalars" : "dense"));
    }
    const uint64_t bytes = update.kind == UpdateKind::kDense ? protocols::EncodedSize(update.delta)
                                                             : update.seed_scalars.size() * sizeof(float);
    if (static_cast<int64_t>(bytes) > config_.coordinator.max_update_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat("update from client \"", p->id, "\" is ", bytes,
                                                       " bytes, above coordinator.max_update_bytes = ",
                                                       config_.coordinator.max_update_bytes));
    }
    std::string why;
    if (update.kind == UpdateKind::kDense && !IsSubCoverage(update.coverage, p->task.coverage, &why)) {
      return absl::InvalidArgumentError(absl::StrCat("update from client \"", p->id, "\" ", why));
    }
    p->bytes_up += static_cast<int64_t>(bytes);
    return absl::OkStatus();
  }();
  if (status.ok()) {
    // Validation and the sum run outside the round lock (the aggregator
    // takes concurrent updates), so that uploads of different clients
    // overlap; the participant and the round wait for the result.
    p->submitting = true;
    ++round_->in_flight;
    aggregation::Aggregator* aggregator = round_->aggregator.get();
    lock.unlock();
    status = aggregator->Accept(update);
    lock.lock();
    p->submitting = false;
    --round_->in_flight;
    now = clock_.NowMs();
  }
  if (!status.ok()) {
    Reject(*p, status);
  } else {
    p->done = true;
    p->contributed = true;
    p->status = ParticipantStatus::kUploaded;
    p->num_examples = update.num_examples;
    p->metrics = update.metrics;
    if (update.peak_memory_bytes > 0) p->metrics["peak_memory_bytes"] = static_cast<double>(update.peak_memory_bytes);
  }
  absl::Status advanced = AdvanceLocked(now);
  PublishStatusLocked(now);
  if (!status.ok()) return status;
  return advanced;
}

template <typename M>
absl::Status RoundEngine::Impl::SubmitToGroup(const Binding& binding, Phase phase, const M& message,
                                              const char* what,
                                              absl::Status (secagg::SecAggServer::*accept)(const M&),
                                              const std::function<absl::Status(const Participant&)>& check) {
  FEDFM_RETURN_IF_ERROR(PreCheck(binding));
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = clock_.NowMs();
  FEDFM_ASSIGN_OR_RETURN(Participant * p, Locate(binding, phase, now));
  FEDFM_ASSIGN_OR_RETURN(Group * g, GroupOf(p));
  if (check) FEDFM_RETURN_IF_ERROR(check(*p));
  if (message.index != p->task.secagg.index) {
    return absl::InvalidArgumentError(absl::StrCat("SecAgg ", what, " of client \"", p->id, "\" name index ",
                                                   message.index, "; the client has index ", p->task.secagg.index));
  }
  FEDFM_RETURN_IF_ERROR(((*g->server).*accept)(message));
  p->answered = true;
  p->bytes_up += static_cast<int64_t>(secagg::SerializedSize(message));
  absl::Status s = AdvanceLocked(now);
  PublishStatusLocked(now);
  return s;
}

absl::Status RoundEngine::Impl::SubmitKeys(const Binding& binding, const secagg::ClientKeys& keys) {
  return SubmitToGroup(binding, Phase::kAdvertiseKeys, keys, "keys", &secagg::SecAggServer::AcceptKeys);
}

template <typename T>
absl::StatusOr<Routed<T>> RoundEngine::Impl::FetchRouted(const Binding& binding, Phase phase,
                                                         std::optional<T> Participant::*message,
                                                         bool Participant::*fetched, const char* left_out_reason) {
  std::lock_guard<std::mutex> lock(mu_);
  FEDFM_ASSIGN_OR_RETURN(Participant * p, LocateForFetch(binding));
  if (p->group < 0) return absl::FailedPreconditionError("this round does not use secure aggregation");
  if (PhaseOrder(PhaseOf(*p)) <= PhaseOrder(phase)) return Routed<T>{std::nullopt, options_.poll_interval_ms};
  const std::optional<T>& m = p->*message;
  if (!m.has_value()) {
    return absl::AbortedError(absl::StrCat("client \"", p->id, "\" is out of the SecAgg round: ",
                                           p->reason.empty() ? left_out_reason : p->reason));
  }
  if (!(p->*fetched)) {
    p->*fetched = true;
    p->bytes_down += static_cast<int64_t>(secagg::SerializedSize(*m));
  }
  return Routed<T>{m, 0};
}

absl::StatusOr<Routed<secagg::NeighborKeys>> RoundEngine::Impl::FetchNeighborKeys(const Binding& binding) {
  return FetchRouted(binding, Phase::kAdvertiseKeys, &Participant::neighbor_keys, &Participant::fetched_keys, "");
}

absl::Status RoundEngine::Impl::SubmitShares(const Binding& binding, const secagg::ClientShares& shares) {
  return SubmitToGroup(binding, Phase::kShareKeys, shares, "shares", &secagg::SecAggServer::AcceptShares);
}

absl::StatusOr<Routed<secagg::RoutedShares>> RoundEngine::Impl::FetchRoutedShares(const Binding& binding) {
  return FetchRouted(binding, Phase::kShareKeys, &Participant::routed_shares, &Participant::fetched_shares, "");
}

absl::Status RoundEngine::Impl::SubmitMaskedInput(const Binding& binding, const secagg::MaskedInput& input,
                                                  const protocols::UploadInfo& info) {
  FEDFM_RETURN_IF_ERROR(PreCheck(binding));
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = clock_.NowMs();
  FEDFM_ASSIGN_OR_RETURN(Participant * p, Locate(binding, Phase::kCollect, now));
  FEDFM_ASSIGN_OR_RETURN(Group * g, GroupOf(p));
  if (input.index != p->task.secagg.index) {
    return absl::InvalidArgumentError(absl::StrCat("SecAgg masked input carries index ", input.index, "; client \"",
                                                   p->id, "\" has index ", p->task.secagg.index));
  }
  if (info.num_examples == 0) {
    return absl::InvalidArgumentError(absl::StrCat("masked input from client \"", p->id, "\" has num_examples 0"));
  }
  const uint64_t bytes = secagg::SerializedSize(input);
  if (static_cast<int64_t>(bytes) > config_.coordinator.max_update_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("masked input from client \"", p->id, "\" is ", bytes,
                                                     " bytes, above coordinator.max_update_bytes = ",
                                                     config_.coordinator.max_update_bytes));
  }
  FEDFM_RETURN_IF_ERROR(g->server->AcceptMaskedInput(input));
  p->answered = true;
  p->masked = true;
  p->num_examples = info.num_examples;
  p->metrics = info.metrics;
  if (info.peak_memory_bytes > 0) p->metrics["peak_memory_bytes"] = static_cast<double>(info.peak_memory_bytes);
  p->bytes_up += static_cast<int64_t>(bytes);
  absl::Status s = AdvanceLocked(now);
  PublishStatusLocked(now);
  return s;
}

absl::StatusOr<Routed<secagg::UnmaskRequest>> RoundEngine::Impl::FetchUnmaskRequest(const Binding& binding) {
  return FetchRouted(binding, Phase::kCollect, &Participant::unmask_request, &Participant::fetched_unmask,
                     "its masked input was not included");
}

absl::Status RoundEngine::Impl::SubmitUnmask(const Binding& binding, const secagg::UnmaskResponse& response) {
  return SubmitToGroup(binding, Phase::kUnmask, response, "unmask responses", &secagg::SecAggServer::AcceptUnmask,
                       [](const Participant& p) -> absl::Status {
                         if (p.unmask_request.has_value()) return absl::OkStatus();
                         return absl::FailedPreconditionError(
                             absl::StrCat("client \"", p.id, "\" was not asked to unmask"));
                       });
}

absl::Status RoundEngine::Impl::Report(const Binding& binding, const protocols::EvalReport& report) {
  FEDFM_RETURN_IF_ERROR(PreCheck(binding));
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = clock_.NowMs();
  if (report.num_examples == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("report from client \"", binding.client_id, "\" has num_examples 0"));
  }
  Participant* p = nullptr;
  if (round_ != nullptr && round_->eval) {
    FEDFM_ASSIGN_OR_RETURN(p, Locate(binding, Phase::kEvaluate, now));
    p->done = true;
  } else {
    // In a training round a report accompanies the client's update, in
    // whatever phase the round has reached.
    FEDFM_ASSIGN_OR_RETURN(p, LocateForFetch(binding));
    if (binding.phase != Phase::kCollect && binding.phase != Phase::kEvaluate) {
      return absl::FailedPreconditionError(absl::StrCat("wrong phase: a report in a training round is bound to ",
                                                        "collect or evaluate, not ",
                                                        protocols::PhaseName(binding.phase)));
    }
    if (p->eval_examples > 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("client \"", p->id, "\" already reported for round ", round_->number));
    }
  }
  p->eval_metrics = report.metrics;
  p->eval_examples = report.num_examples;
  absl::Status s = AdvanceLocked(now);
  PublishStatusLocked(now);
  return s;
}

absl::Status RoundEngine::Impl::Tick() {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = clock_.NowMs();
  absl::Status s = AdvanceLocked(now);
  PublishStatusLocked(now);
  return s;
}

RoundEngineStatus RoundEngine::Impl::Status() {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = clock_.NowMs();
  RoundEngineStatus s;
  s.run_id = run_id_;
  s.finished = finished_;
  s.finish_reason = finish_reason_;
  s.phase_changes = phase_changes_;
  s.total_rounds = total_rounds_;
  s.model_version = current_.version;
  s.clients_available = AvailableCountLocked(now, /*since_last_round=*/true);
  s.last_failure = last_failure_;
  if (round_ != nullptr) {
    s.round = round_->number;
    s.attempt = round_->attempt;
    s.evaluation_round = round_->eval;
    s.phase = round_->phase;
    s.phase_deadline_ms = round_->phase_deadline_ms;
    s.training_rounds_done = TrainingRoundsUpTo(round_->number - 1);
    for (const Participant& p : round_->participants) s.selected.push_back(p.id);
  } else {
    s.round = finished_ ? last_committed_ : last_committed_ + 1;
    s.evaluation_round = !finished_ && IsEvalRound(s.round);
    s.phase = finished_ ? Phase::kDone : Phase::kIdle;
    s.training_rounds_done = TrainingRoundsUpTo(last_committed_);
    if (!finished_) {
      int64_t next = selection_blocked_until_ms_ > now ? selection_blocked_until_ms_ : 0;
      if (enough_since_ms_ >= 0) next = std::max(next, enough_since_ms_ + options_.selection_wait_ms);
      s.phase_deadline_ms = next;
    }
  }
  return s;
}

// ---------------------------------------------------------------------------
// RoundEngine

absl::StatusOr<std::unique_ptr<RoundEngine>> RoundEngine::Create(const protocols::RunConfig& config, Store& store,
                                                                 Clock& clock, TensorMap initial_state,
                                                                 const protocols::ModelDims& dims,
                                                                 aggregation::SeedReplay* seed_replay,
                                                                 RoundEngineOptions options) {
  auto impl = std::make_unique<Impl>(config, store, clock, dims, seed_replay, std::move(options));
  FEDFM_RETURN_IF_ERROR(impl->Init(std::move(initial_state)));
  return std::unique_ptr<RoundEngine>(new RoundEngine(std::move(impl)));
}

RoundEngine::RoundEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RoundEngine::~RoundEngine() = default;

const std::string& RoundEngine::run_id() const { return impl_->run_id(); }
absl::StatusOr<protocols::EnrollResponse> RoundEngine::Enroll(const protocols::EnrollRequest& request) {
  return impl_->Enroll(request);
}
absl::StatusOr<protocols::EnrollResponse> RoundEngine::RegisterClient(const std::string& client_id,
                                                                      const std::string& name,
                                                                      const DeviceProfile& profile) {
  return impl_->RegisterClient(client_id, name, profile);
}
absl::StatusOr<std::string> RoundEngine::CreateToken(int64_t uses, int64_t expires_in_ms) {
  return impl_->CreateToken(uses, expires_in_ms);
}
absl::StatusOr<std::vector<ClientInfo>> RoundEngine::ListClients() { return impl_->ListClients(); }
absl::Status RoundEngine::RevokeClient(const std::string& client_id) { return impl_->RevokeClient(client_id); }
bool RoundEngine::IsRevoked(const std::string& client_id) const { return impl_->IsRevoked(client_id); }
absl::StatusOr<protocols::PollResponse> RoundEngine::Poll(const protocols::PollRequest& request) {
  return impl_->Poll(request);
}
absl::StatusOr<protocols::ModelSnapshot> RoundEngine::GetModel(const std::string& version) {
  return impl_->GetModel(version);
}
absl::Status RoundEngine::SubmitUpdate(const Binding& binding, const Update& update) {
  return impl_->SubmitUpdate(binding, update);
}
absl::Status RoundEngine::SubmitKeys(const Binding& binding, const secagg::ClientKeys& keys) {
  return impl_->SubmitKeys(binding, keys);
}
absl::StatusOr<Routed<secagg::NeighborKeys>> RoundEngine::FetchNeighborKeys(const Binding& binding) {
  return impl_->FetchNeighborKeys(binding);
}
absl::Status RoundEngine::SubmitShares(const Binding& binding, const secagg::ClientShares& shares) {
  return impl_->SubmitShares(binding, shares);
}
absl::StatusOr<Routed<secagg::RoutedShares>> RoundEngine::FetchRoutedShares(const Binding& binding) {
  return impl_->FetchRoutedShares(binding);
}
absl::Status RoundEngine::SubmitMaskedInput(const Binding& binding, const secagg::MaskedInput& input,
                                            const protocols::UploadInfo& info) {
  return impl_->SubmitMaskedInput(binding, input, info);
}
absl::StatusOr<Routed<secagg::UnmaskRequest>> RoundEngine::FetchUnmaskRequest(const Binding& binding) {
  return impl_->FetchUnmaskRequest(binding);
}
absl::Status RoundEngine::SubmitUnmask(const Binding& binding, const secagg::UnmaskResponse& response) {
  return impl_->SubmitUnmask(binding, response);
}
absl::Status RoundEngine::Report(const Binding& binding, const protocols::EvalReport& report) {
  return impl_->Report(binding, report);
}
absl::Status RoundEngine::Tick() { return impl_->Tick(); }
RoundEngineStatus RoundEngine::Status() { return impl_->Status(); }
bool RoundEngine::finished() { return impl_->finished(); }
DashboardSource& RoundEngine::dashboard() { return impl_->dashboard(); }
std::vector<RoundSummary> RoundEngine::History() {
  absl::StatusOr<DashboardSnapshot> snap = impl_->dashboard().Snapshot(-1);
  return snap.ok() ? snap->history : std::vector<RoundSummary>();
}

}  // namespace fedfm::coordinator
