// RoundEngine: one run's federated round loop, free of any transport. The
// gRPC service translates RPCs into these calls; the simulation calls them
// in process from its worker threads. Flower's split: the algorithm lives in
// aggregation/ (Aggregator, SecAggServer), the round loop here, the
// transport elsewhere.
//
// A round: select -> configure -> [SecAgg+: advertise keys -> share keys] ->
// collect -> [SecAgg+: unmask] -> aggregate -> commit (Store::CommitRound).
//
//   select     when at least rounds.clients_per_round enrolled clients are
//              available (polled within `liveness_ms` and since the last
//              round attempt ended: a poll during a round was for that
//              round, so its participants are not taken again before they
//              ask for work), or at least
//              rounds.min_clients after waiting `selection_wait_ms`:
//              sample clients_per_round of them without replacement, in a
//              deterministic order from seed f(run seed, round, attempt).
//   configure  per client: method, LoRA rank and k from coordinator::
//              ChooseMethod (progressive partial training: k grows by
//              partial.progressive_step every partial.progressive_every
//              rounds, up to partial.progressive_max); the round's seed pool
//              for zeroth-order clients (zeroth_order::SeedPool::ForRound);
//              the coverage the update must declare (`CoverageRule`).
//              Selected clients learn their Task from Poll.
//   SecAgg+    when secagg.enabled: dense updates and seed-scalar updates
//              aggregate in separate groups, each with its own SecAggServer.
//              A group of one cannot hide its member's update (the sum of
//              one is the update), so selection tops such a group up with
//              another available client of its kind or, when none is
//              available, leaves its lone member out of the round; and a
//              group whose masked inputs arrive from fewer than 2 clients is
//              abandoned before anything is unmasked (its clients count as
//              dropped). The groups are independent SecAgg+ instances,
//              each with its own phases: a group's phase closes as soon as
//              every live member of the group has answered, or after
//              `secagg_phase_ms` (advertise, share keys, unmask) /
//              rounds.deadline_s (collect); members missing then have
//              dropped out and SecAgg+ recovers as long as enough
//              neighbours remain. A member of one group that drops out does
//              not hold up the other group. The round aggregates once every
//              group is done (unmasked or abandoned).
//   collect    plaintext: each Update streams into aggregation::
//              MakeAggregator's Aggregator on arrival (O(model) memory); a
//              refused update does not stop the round. Closes when every
//              selected client has answered or at the deadline
//              (rounds.deadline_s after configure); later messages are
//              refused as late.
//   aggregate  plaintext: Aggregator::Finish. SecAgg: each group's sum
//              enters the Aggregator through AcceptSecureSum with its
//              contributors' public coverage and weights, so the result is
//              the same coverage-weighted mean as in a plaintext round (up
//              to the fixed-point resolution).
//   commit     Store::CommitRound: new global state, server-optimizer
//              state, participants (uploaded / dropped / rejected, with the
//              reason), client metrics and round metrics (num_examples-
//              weighted means of the clients' metrics). Below
//              rounds.min_clients the round fails (Store::FailRound) and is
//              started again under the same number (a new attempt, a new
//              selection, fresh SecAgg keys).
//
// Rounds. Round 0 commits the initial global state. Training rounds follow;
// with rounds.eval_every = E > 0 every (E+1)-th round number is an
// evaluation round (selected clients evaluate the current global state and
// Report; the state is committed unchanged), so the run has run.rounds
// training rounds and run.rounds / E evaluation rounds. The run stops after
// the last of them, or early once the round-level metric
// rounds.target_metric reaches rounds.target_value (at or below it for a
// metric whose name contains "loss", at or above it otherwise). Then every
// poll answers kStop.
//
// Crash-resume. Create() over a store holding committed rounds of the run
// resumes after the last committed round, from its model version and
// optimizer state; a round that was in flight is started again (a new
// attempt: fresh selection and SecAgg keys). Nothing committed is applied
// twice, and the state after N committed rounds does not depend on how many
// restarts happened in between.
//
// Client messages. Every state-changing message carries a Binding. It is
// checked in this order, and refused with the status a client sees:
//   NotFound             unknown client
//   PermissionDenied     revoked client
//   InvalidArgument      wrong run id, or a malformed message (wrong shape,
//                        non-finite value, coverage beyond the task's, wrong
//                        update kind or length)
//   FailedPrecondition   replayed sequence number (Store::AcceptSequence,
//                        one durable write per message); a client not
//                        selected for the round; a wrong phase (a message of
//                        another phase than the one the client is in)
//   Aborted              a stale round (the binding names another round
//                        than the one in progress), or a late
//                        message (its phase closed at the deadline): poll
//                        again
//   AlreadyExists        a second message of the same kind for the round
//   ResourceExhausted    an update above coordinator.max_update_bytes
// A refused message changes nothing but the client's sequence counter (and
// an update refused as malformed, oversized or of the wrong kind is recorded
// as the client's participation, "rejected" with the reason, and ends the
// client's part in the round). Read-only calls (Poll, GetModel, Fetch*) are not
// sequence-checked: replaying them reveals nothing the client may not see.
//
// Thread safety: every method may be called from any thread. One mutex
// guards the round state; store writes of one client message (the sequence
// check) happen outside it; aggregation and the commit run under it, so
// calls arriving meanwhile wait for the round to change.
#ifndef FEDFM_COORDINATOR_ROUND_ENGINE_H_
#define FEDFM_COORDINATOR_ROUND_ENGINE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "aggregation/aggregator.h"
#include "aggregation/secagg/messages.h"
#include "coordinator/clock.h"
#include "coordinator/dashboard.h"
#include "coordinator/policy.h"
#include "coordinator/store.h"
#include "protocols/config/options.h"
#include "protocols/device.h"
#include "protocols/task.h"
#include "protocols/tensor.h"
#include "protocols/update.h"

namespace fedfm::coordinator {

// Which part of the global trainable state a client of a given assignment
// trains: the coverage its dense update must declare. The default,
// DefaultCoverage below, follows the tensor-naming convention of the peft/
// module; tests and other state layouts inject their own.
using CoverageRule = std::function<absl::StatusOr<protocols::Coverage>(
    const protocols::TensorMap& global_state, const MethodChoice& choice, const protocols::RunConfig& config,
    const protocols::ModelDims& dims)>;

// The convention (HF PEFT names): a tensor whose name contains ".lora_A" is
// [r_max, in] (rank along dim 0), ".lora_B" is [out, r_max] (rank along dim
// 1); a tensor whose name contains "layers.<i>." belongs to block i of
// dims.num_layers; any other tensor (a task head) is trained by every
// backprop method. With lora.freeze_a (FFA-LoRA) no ".lora_A" tensor is
// covered.
//   kLora          every LoRA tensor, leading lora_rank slices; heads
//   kPartial       blocks >= num_layers - top_blocks: their LoRA tensors at
//                  lora_rank (or, with partial.full_weights, their non-LoRA
//                  tensors whole); heads
//   kZerothOrder   every tensor whole but optimizer state (what a dense
//                  zeroth-order update perturbs; seed-scalar updates carry
//                  no coverage)
// Optimizer-state tensors (protocols/optimizer_state.h) keep their tensor's
// "layers.<i>." and ".lora_A"/".lora_B", so a backprop method covers a
// moment exactly as it covers its tensor; optimizer.step counts as a head.
// InvalidArgument if the result covers nothing.
absl::StatusOr<protocols::Coverage> DefaultCoverage(const protocols::TensorMap& global_state,
                                                    const MethodChoice& choice,
                                                    const protocols::RunConfig& config,
                                                    const protocols::ModelDims& dims);

// How a client's method, LoRA rank and k are chosen for a round. `config`
// is the run config as of that round (partial.top_blocks already grown by
// the progressive schedule). The default is ChooseMethod(profile, config,
// shape); the simulation and tests may pin methods per client.
using MethodRule = std::function<absl::StatusOr<MethodChoice>(
    const std::string& client_id, const protocols::DeviceProfile& profile, const protocols::RunConfig& config,
    const WorkloadShape& shape)>;

// Builds a round's aggregator from the run's aggregation options, the state
// the round trains from and the round's context. A custom rule may wrap or
// replace the built-in one (aggregation::MakeAggregator).
using AggregatorFactory = std::function<absl::StatusOr<std::unique_ptr<aggregation::Aggregator>>(
    const protocols::AggregationOptions& options, const protocols::TensorMap& global_state,
    const aggregation::RoundContext& context)>;

// Inputs of the engine besides the run config.
struct RoundEngineOptions {
  // The run to drive. Empty: a new run with a fresh id (NewRunId). An id the
  // store knows: resume it. An unknown id: a new run with that id.
  std::string run_id;
  // A client is available for selection when it polled within this window
  // (and since the last round attempt ended).
  int64_t liveness_ms = 60'000;
  // How long to wait, once at least rounds.min_clients are available, for
  // rounds.clients_per_round of them before selecting fewer.
  int64_t selection_wait_ms = 10'000;
  // retry_after_ms of kWait answers and of not-yet-ready fetches.
  int64_t poll_interval_ms = 1'000;
  // Deadline of each SecAgg+ phase other than collect (advertise keys, share
  // keys, unmask). 0: rounds.deadline_s, like collect.
  int64_t secagg_phase_ms = 60'000;
  // Fixed-point clipping range of the seed-scalar SecAgg group (the scalars
  // are projected gradients, on another scale than deltas). 0: secagg.clip.
  double seed_scalar_clip = 0.0;
  // Threads for SecAgg mask regeneration.
  int secagg_threads = 1;
  // Null: DefaultCoverage.
  CoverageRule coverage_rule;
  // Null: ChooseMethod.
  MethodRule method_rule;
  // Null: aggregation::MakeAggregator.
  AggregatorFactory make_aggregator;
};

// A client as the admin sees it.
struct ClientInfo {
  std::string client_id;
  std::string name;
  protocols::DeviceProfile profile;
  bool revoked = false;
  int64_t enrolled_at_ms = 0;
  int64_t last_seen_ms = 0;
};

using protocols::Routed;

// The engine's state at one instant.
struct RoundEngineStatus {
  std::string run_id;
  int64_t round = 0;            // in progress, or the last one when finished
  int64_t attempt = 0;
  bool evaluation_round = false;
  // kDone when the run is over. A SecAgg+ round: the earliest phase of its
  // groups (and phase_deadline_ms the earliest of their deadlines).
  protocols::Phase phase = protocols::Phase::kIdle;
  bool finished = false;
  std::string finish_reason;    // "completed N rounds", "target eval_loss <= 2.1 reached", ...
  int64_t training_rounds_done = 0;
  int64_t total_rounds = 0;     // training + evaluation rounds planned
  std::string model_version;    // the current global state
  int64_t phase_deadline_ms = 0;  // when Tick() will next act on a deadline; 0: none pending
  // Phases closed so far (a round's, or one SecAgg group's): a waiting
  // client may have something new whenever it changes.
  int64_t phase_changes = 0;
  std::vector<std::string> selected;  // this round's participants, ascending
  int64_t clients_available = 0;
  std::string last_failure;     // why the last failed attempt failed
};

class RoundEngine {
 public:
  // Builds the engine for `config`'s run over `store`, creating the run (and
  // committing `initial_state` as round 0) or resuming it (see above; the
  // stored state must have the tensor names and shapes of `initial_state`,
  // else FailedPrecondition). `seed_replay` expands seed scalars into a dense
  // delta (e.g. SeedPoolReplay, coordinator/round_engine_seed_replay.h);
  // when it is null, clients that would send seed scalars are not selected
  // (and train.method = "zo" with zeroth_order.seed_pool > 0 is
  // InvalidArgument). InvalidArgument for a config the
  // engine cannot run (ValidateRunConfig's errors, an aggregation algorithm
  // it does not know, secagg with more clients than fixed point can sum).
  // `config`, `store`, `clock` and `seed_replay` must outlive the engine.
  static absl::StatusOr<std::unique_ptr<RoundEngine>> Create(const protocols::RunConfig& config, Store& store,
                                                             Clock& clock, protocols::TensorMap initial_state,
                                                             const protocols::ModelDims& dims,
                                                             aggregation::SeedReplay* seed_replay,
                                                             RoundEngineOptions options = {});
  ~RoundEngine();
  RoundEngine(const RoundEngine&) = delete;
  RoundEngine& operator=(const RoundEngine&) = delete;

  const std::string& run_id() const;

  // --- Enrollment and admin -----------------------------------------------

  // Enrolls a device with a one-time token (Store::EnrollClient): a fresh
  // client id and secret. NotFound for an unknown token, FailedPrecondition
  // for an expired or used-up one.
  absl::StatusOr<protocols::EnrollResponse> Enroll(const protocols::EnrollRequest& request);
  // Adds a client without a token (the simulation's virtual devices,
  // tests). `client_id` empty: a fresh one. AlreadyExists for a taken id.
  absl::StatusOr<protocols::EnrollResponse> RegisterClient(const std::string& client_id, const std::string& name,
                                                           const protocols::DeviceProfile& profile);
  // A token good for `uses` enrollments until `expires_in_ms` from now.
  absl::StatusOr<std::string> CreateToken(int64_t uses, int64_t expires_in_ms);
  absl::StatusOr<std::vector<ClientInfo>> ListClients();
  // Revokes the client: its later messages are refused; if it is part of
  // the round in progress it counts as dropped from now on.
  absl::Status RevokeClient(const std::string& client_id);
  // Whether the client is revoked (from memory; the store is read at start).
  bool IsRevoked(const std::string& client_id) const;

  // --- The round, client side ---------------------------------------------

  // What the client should do now. Records it as available. kTrain (again
  // on every poll until the client has done its part), kWait with
  // retry_after_ms, or kStop once the run is over. NotFound / PermissionDenied
  // for an unknown / revoked client.
  absl::StatusOr<protocols::PollResponse> Poll(const protocols::PollRequest& request);

  // The global state `version` (the current one, or any committed one).
  // NotFound for a version the run never had.
  absl::StatusOr<protocols::ModelSnapshot> GetModel(const std::string& version);

  // Plaintext rounds: the client's update for the round (binding phase
  // kCollect). `update.client_id` must equal the binding's. Validation
  // failures are InvalidArgument naming the tensor. Updates of different
  // clients are validated and summed concurrently (outside the round lock);
  // a second upload of a client whose first is still being summed is
  // AlreadyExists, and the phase does not close under an update in flight.
  absl::Status SubmitUpdate(const protocols::Binding& binding, const protocols::Update& update);

  // SecAgg+ rounds. Each Submit carries the phase it belongs to in the
  // binding; each Fetch answers once that phase has closed.
  absl::Status SubmitKeys(const protocols::Binding& binding, const secagg::ClientKeys& keys);
  absl::StatusOr<Routed<secagg::NeighborKeys>> FetchNeighborKeys(const protocols::Binding& binding);
  absl::Status SubmitShares(const protocols::Binding& binding, const secagg::ClientShares& shares);
  absl::StatusOr<Routed<secagg::RoutedShares>> FetchRoutedShares(const protocols::Binding& binding);
  // `info` is the public part of the contribution (num_examples > 0,
  // metrics); the masked vector has the task's vector_length words.
  absl::Status SubmitMaskedInput(const protocols::Binding& binding, const secagg::MaskedInput& input,
                                 const protocols::UploadInfo& info);
  absl::StatusOr<Routed<secagg::UnmaskRequest>> FetchUnmaskRequest(const protocols::Binding& binding);
  absl::Status SubmitUnmask(const protocols::Binding& binding, const secagg::UnmaskResponse& response);

  // Evaluation metrics of the global state (binding phase kEvaluate). In an
  // evaluation round this is the client's part; in a training round it may
  // accompany the update (binding phase kCollect) and is recorded with it.
  absl::Status Report(const protocols::Binding& binding, const protocols::EvalReport& report);

  // --- Time -----------------------------------------------------------------

  // Acts on everything due at the clock's current time: selects when enough
  // clients are available, closes phases whose deadline passed (their
  // missing clients have dropped out), aggregates, commits, starts the next
  // round. Phases also advance inside the client calls as soon as every
  // client has answered; Tick is for deadlines. Errors: a store failure (the
  // round is then retried at the next Tick).
  absl::Status Tick();

  // --- Observation ------------------------------------------------------------

  RoundEngineStatus Status();
  bool finished();
  // Committed rounds, oldest first (the dashboard's history).
  std::vector<RoundSummary> History();
  // The dashboard's view of the run (status and committed rounds, rebuilt
  // from the store on resume). Valid while the engine lives.
  DashboardSource& dashboard();

 private:
  class Impl;
  explicit RoundEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fedfm::coordinator

#endif  // FEDFM_COORDINATOR_ROUND_ENGINE_H_
