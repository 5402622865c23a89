// Store: the coordinator's persistent state. Clients and their enrollment
// tokens, runs, rounds with their participants and metrics, model versions
// (global trainable state and server-optimizer state, as files named by their
// SHA-256) and the per-client replay counters.
//
// Who calls it: the round engine (StartRound / CommitRound / FailRound, and
// LatestCommittedRound + LoadModelVersion to resume after a restart), the
// gRPC service (enrollment, authentication, replay checks, admin RPCs), the
// dashboard (reads). Each gets a `Store&` injected, as leveldb code gets an
// `Env*`; tests may pass a fake. The production implementation is SQLite
// (coordinator/sqlite_store.h), which also has an in-memory mode.
//
// Crash safety: every mutating call is one transaction. CommitRound records a
// round as committed together with its participants, metrics, new model
// version and new optimizer state; after a kill -9 or a power loss at any
// instant the store holds either all of that round or none of it, and every
// committed round's files are present. A coordinator restarts from
// LatestCommittedRound and loses nothing committed.
//
// Time: every timestamp is milliseconds since the Unix epoch, passed in by the
// caller from its injected Clock; the store never reads a clock.
//
// Errors: absl::Status codes a caller can act on, with messages naming the
// table, the row and the file:
//   NotFound            no such row (client, run, round, model version) or file
//   AlreadyExists       an id or primary key already taken
//   FailedPrecondition  the row is in the wrong state (round not started,
//                       token used up or expired, replayed sequence number)
//   PermissionDenied    the client is revoked
//   InvalidArgument     a malformed argument (empty id, negative round)
//   DataLoss            a model file whose bytes no longer match its SHA-256
//   Unavailable         the database is locked by another process
//   Internal            anything else from SQLite or the file system
// Secrets (client auth secrets, token hashes) never appear in messages.
//
// Thread safety: implementations are safe to call from any number of threads
// (the gRPC service calls from its thread pool).
#ifndef FEDFM_COORDINATOR_STORE_H_
#define FEDFM_COORDINATOR_STORE_H_

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "protocols/config/options.h"

namespace fedfm::coordinator {

// An enrolled device.
struct ClientRecord {
  std::string id;            // e.g. from NewClientId(); unique
  std::string name;          // human-readable device name
  std::string profile_json;  // the DeviceProfile as JSON text; not parsed by the store
  int64_t enrolled_at_ms = 0;
  int64_t last_seen_ms = 0;
  bool revoked = false;
  // What the service checks the client's requests against. For HMAC-signed
  // requests this is the key itself (EnrollResponse.client_secret): an HMAC
  // cannot be verified from a hash of its key. For mTLS clients, the SHA-256
  // of the client certificate. Bytes; never logged.
  std::string auth_secret;
  // Replay protection: the highest Binding.sequence accepted so far (0: none).
  uint64_t last_sequence = 0;
};

// A token that lets devices enroll. Only its hash is stored.
struct EnrollmentTokenRecord {
  std::string token_hash;  // HashToken(token) from coordinator/ids.h
  int64_t uses_left = 1;   // >= 1 when added; each enrollment consumes one
  int64_t expires_at_ms = 0;
  int64_t created_at_ms = 0;
};

enum class RunStatus { kRunning, kFinished, kFailed, kStopped };
const char* RunStatusName(RunStatus status);  // "running" | "finished" | "failed" | "stopped"

struct RunRecord {
  std::string id;           // e.g. from NewRunId(); unique
  std::string name;
  std::string config_toml;  // the run's full configuration (RunConfigToToml)
  int64_t created_at_ms = 0;
  RunStatus status = RunStatus::kRunning;
};

enum class RoundStatus { kStarted, kCommitted, kFailed };
const char* RoundStatusName(RoundStatus status);  // "started" | "committed" | "failed"

// One round of a run. Round numbers of a run are contiguous from 0; by
// convention round 0 commits the initial global state with no participants.
// A round that failed, or was interrupted by a crash (still kStarted after a
// restart), is started again under the same number with `attempt` + 1.
struct RoundRecord {
  std::string run_id;
  int64_t round = 0;
  RoundStatus status = RoundStatus::kStarted;
  int64_t attempt = 1;
  int64_t started_at_ms = 0;
  int64_t committed_at_ms = 0;     // 0 unless kCommitted
  int64_t failed_at_ms = 0;        // 0 unless kFailed
  std::string failure_reason;      // set when kFailed
  std::string model_version;       // SHA-256 hex of the committed global state; "" unless kCommitted
  std::string optimizer_state;     // SHA-256 hex of the server-optimizer state; "" when none
};

enum class ParticipantStatus { kSelected, kUploaded, kDropped, kRejected };
// "selected" | "uploaded" | "dropped" | "rejected"
const char* ParticipantStatusName(ParticipantStatus status);

// One client's part in one round.
struct ParticipantRecord {
  std::string client_id;  // must name an enrolled client
  protocols::Method method = protocols::Method::kLora;
  int64_t rank = 0;       // LoRA rank r_i the client trained; 0 when it trained no adapter
  ParticipantStatus status = ParticipantStatus::kSelected;
  std::string reason;     // why dropped or rejected; "" otherwise
  int64_t num_examples = 0;
  int64_t bytes_up = 0;
  int64_t bytes_down = 0;

  bool operator==(const ParticipantRecord&) const = default;
};

// A named value of a round ("eval_loss", "train_loss", "peak_memory_bytes").
// NaN is kept (a diverged loss is worth recording).
struct MetricRecord {
  std::string name;
  double value = 0.0;
  std::string client_id;  // "" for a round-level (aggregate) metric

  bool operator==(const MetricRecord&) const = default;
};

enum class BlobKind {
  kModel,           // global trainable state (safetensors)
  kOptimizerState,  // aggregator / server-optimizer state (safetensors)
};
const char* BlobKindName(BlobKind kind);  // "model" | "optimizer_state"

// A content-addressed file beside the database, named "<sha256>.safetensors".
struct ModelVersionRecord {
  std::string sha256;  // lower-case hex of the file's bytes
  BlobKind kind = BlobKind::kModel;
  std::filesystem::path path;  // absolute; empty for an in-memory store
  int64_t size_bytes = 0;
  int64_t created_at_ms = 0;
};

// A loaded, verified model version. `bytes` stay valid while `owner` lives
// (a read-only mapping of the file, or the in-memory copy).
struct ModelVersion {
  ModelVersionRecord record;
  std::span<const std::byte> bytes;
  std::shared_ptr<const void> owner;
};

// Everything CommitRound records, atomically. The spans are read during the
// call only.
struct RoundCommit {
  std::string run_id;
  int64_t round = 0;
  int64_t committed_at_ms = 0;
  // The new global trainable state: safetensors bytes (SerializeSafetensors).
  // Not parsed by the store; must not be empty.
  std::span<const std::byte> model;
  // The aggregator / server-optimizer state after this round (FedAvgM
  // momentum, FedAdam moments), safetensors bytes; empty when it keeps none.
  std::span<const std::byte> optimizer_state;
  std::vector<ParticipantRecord> participants;  // at most one per client
  std::vector<MetricRecord> metrics;            // unique (client_id, name)
};

// What FailRound records, atomically, so the dashboard can say why.
struct RoundFailure {
  std::string run_id;
  int64_t round = 0;
  int64_t failed_at_ms = 0;
  std::string reason;  // e.g. "2 updates, min_clients is 3"
  std::vector<ParticipantRecord> participants;
  std::vector<MetricRecord> metrics;
};

class Store {
 public:
  virtual ~Store() = default;

  // --- Clients and enrollment ----------------------------------------------

  // Adds a client without a token (the simulation's virtual devices, tests).
  // AlreadyExists if the id is taken.
  virtual absl::Status AddClient(const ClientRecord& client) = 0;

  // InvalidArgument unless `token.token_hash` is a SHA-256 hex and uses_left
  // >= 1; AlreadyExists for a hash already stored.
  virtual absl::Status AddEnrollmentToken(const EnrollmentTokenRecord& token) = 0;

  // Consumes one use of the token hashed as `token_hash` and adds `client`,
  // in one transaction: on any error nothing changes. NotFound for an unknown
  // token; FailedPrecondition when it has expired (expires_at_ms <= now_ms)
  // or has no use left; AlreadyExists if the client id is taken.
  virtual absl::Status EnrollClient(const std::string& token_hash, int64_t now_ms,
                                    const ClientRecord& client) = 0;

  // NotFound for an unknown id.
  virtual absl::StatusOr<ClientRecord> GetClient(const std::string& client_id) = 0;
  // Ordered by enrolled_at_ms, then id.
  virtual absl::StatusOr<std::vector<ClientRecord>> ListClients() = 0;
  // Idempotent. NotFound for an unknown id.
  virtual absl::Status RevokeClient(const std::string& client_id) = 0;

  // Replay protection and liveness in one write: accepts `sequence` iff it is
  // greater than the client's last accepted one, then records it and
  // last_seen_ms = seen_at_ms. FailedPrecondition ("replayed") when it is not
  // greater; PermissionDenied for a revoked client; NotFound for an unknown
  // one; InvalidArgument for a sequence above 2^63 - 1. One durable commit
  // (an fsync) per call.
  virtual absl::Status AcceptSequence(const std::string& client_id, uint64_t sequence,
                                      int64_t seen_at_ms) = 0;

  // --- Runs ---------------------------------------------------------------

  // AlreadyExists if the id is taken.
  virtual absl::Status CreateRun(const RunRecord& run) = 0;
  virtual absl::StatusOr<RunRecord> GetRun(const std::string& run_id) = 0;
  // Ordered by created_at_ms, then id.
  virtual absl::StatusOr<std::vector<RunRecord>> ListRuns() = 0;
  virtual absl::Status SetRunStatus(const std::string& run_id, RunStatus status) = 0;

  // --- Rounds -------------------------------------------------------------

  // Starts `round` of a running run. `round` must be the next one: the latest
  // committed round + 1, or 0 when none is committed; otherwise
  // FailedPrecondition naming the expected number. When that round already
  // has a row (it failed, or a crash interrupted it) it is started again:
  // attempt + 1, and the participants and metrics of the earlier attempt are
  // removed. NotFound for an unknown run; FailedPrecondition for a run that is
  // not kRunning.
  virtual absl::StatusOr<RoundRecord> StartRound(const std::string& run_id, int64_t round,
                                                 int64_t started_at_ms) = 0;

  // Records the round as committed with its participants, metrics, model and
  // optimizer state. First writes the model files (atomically, fsynced, the
  // directory fsynced), then commits one transaction referencing them, so a
  // crash leaves either the whole round or none of it (plus, at worst, an
  // unreferenced file for RemoveOrphanFiles). FailedPrecondition unless the
  // round is kStarted; NotFound if a participant's client is unknown;
  // InvalidArgument for an empty model, duplicate participants or metrics.
  // Returns the committed round.
  virtual absl::StatusOr<RoundRecord> CommitRound(const RoundCommit& commit) = 0;

  // Records the round as failed, with what is known of it. FailedPrecondition
  // unless the round is kStarted. The next StartRound of the same number
  // starts a new attempt.
  virtual absl::Status FailRound(const RoundFailure& failure) = 0;

  virtual absl::StatusOr<RoundRecord> GetRound(const std::string& run_id, int64_t round) = 0;
  // std::nullopt when the run has no committed round yet; NotFound for an
  // unknown run.
  virtual absl::StatusOr<std::optional<RoundRecord>> LatestCommittedRound(const std::string& run_id) = 0;
  // Every round of the run, by number.
  virtual absl::StatusOr<std::vector<RoundRecord>> ListRounds(const std::string& run_id) = 0;
  // Ordered by client id.
  virtual absl::StatusOr<std::vector<ParticipantRecord>> ListParticipants(const std::string& run_id,
                                                                          int64_t round) = 0;
  // Round-level metrics first, then per client; each by name.
  virtual absl::StatusOr<std::vector<MetricRecord>> ListMetrics(const std::string& run_id,
                                                                int64_t round) = 0;
  // The round-level metric `name` of every committed round: (round, value)
  // by round. For the dashboard's curves.
  virtual absl::StatusOr<std::vector<std::pair<int64_t, double>>> MetricSeries(
      const std::string& run_id, const std::string& name) = 0;

  // --- Model versions -----------------------------------------------------

  // Reads the model version (or optimizer state) `sha256` and verifies the
  // bytes against it. InvalidArgument unless `sha256` is 64 lower-case hex;
  // NotFound when no row has it, or naming the file when the file is
  // missing; DataLoss naming the file when its size or hash differs.
  virtual absl::StatusOr<ModelVersion> LoadModelVersion(const std::string& sha256) = 0;

  // Deletes files in the model directory that no row references: left by a
  // crash between writing a file and committing its round, or temporaries
  // of an interrupted atomic write. Returns how many were deleted. Safe to
  // call while other threads commit rounds (never deletes a file of a
  // commit in progress); not while another process has the store open.
  virtual absl::StatusOr<int64_t> RemoveOrphanFiles() = 0;
};

}  // namespace fedfm::coordinator

#endif  // FEDFM_COORDINATOR_STORE_H_
