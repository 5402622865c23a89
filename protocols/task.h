// What a coordinator and a client say to each other, as plain structs shared
// by both sides: the Binding every client message carries, the Task a client
// is given, the answer to a poll, enrollment, upload metadata and evaluation
// reports. The round engine (coordinator/round_engine.h) takes and returns
// these; the client's CoordinatorLink (client/coordinator_link.h) carries
// them; the gRPC layer maps them 1:1 onto protocols/fedfm.proto and the
// simulation passes them in process. SecAgg+ payloads are the typed messages
// of aggregation/secagg/messages.h, which both sides include directly.
#ifndef FEDFM_PROTOCOLS_TASK_H_
#define FEDFM_PROTOCOLS_TASK_H_

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "protocols/config/options.h"
#include "protocols/device.h"
#include "protocols/update.h"

namespace fedfm::protocols {

inline constexpr uint32_t kProtocolVersion = 1;

// The phase a client message belongs to (fedfm.proto `Phase`). A message
// whose phase disagrees with what the coordinator expects from that client
// is refused ("wrong phase").
enum class Phase {
  kUnspecified = 0,
  kEnroll = 1,
  kIdle = 2,
  kConfigure = 3,
  kAdvertiseKeys = 4,  // SecAgg+ round 0: SubmitKeys, FetchNeighborKeys
  kShareKeys = 5,      // SecAgg+ round 1: SubmitShares, FetchRoutedShares
  kCollect = 6,        // plain SubmitUpdate, or SecAgg+ round 2 SubmitMaskedInput
  kUnmask = 7,         // SecAgg+ round 3: FetchUnmaskRequest, SubmitUnmask
  kEvaluate = 8,       // evaluation rounds: Report
  kDone = 9,
};
// "unspecified", "enroll", "idle", "configure", "advertise_keys",
// "share_keys", "collect", "unmask", "evaluate", "done".
inline const char* PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kUnspecified: return "unspecified";
    case Phase::kEnroll: return "enroll";
    case Phase::kIdle: return "idle";
    case Phase::kConfigure: return "configure";
    case Phase::kAdvertiseKeys: return "advertise_keys";
    case Phase::kShareKeys: return "share_keys";
    case Phase::kCollect: return "collect";
    case Phase::kUnmask: return "unmask";
    case Phase::kEvaluate: return "evaluate";
    case Phase::kDone: return "done";
  }
  return "unknown";
}

// Binds a client message to (run, round, client, phase). `sequence` is the
// client's own counter, strictly increasing over every state-changing
// message it ever sends (replays are refused); a client keeps it across
// reconnects and restarts (any monotonic source works, e.g. a persisted
// counter or the wall clock in microseconds).
struct Binding {
  std::string run_id;
  int64_t round = 0;
  std::string client_id;
  Phase phase = Phase::kUnspecified;
  uint64_t sequence = 0;

  bool operator==(const Binding&) const = default;
};

// The SecAgg+ group a client belongs to for one round: everything it needs
// to build the same secagg::RoundConfig as the server (MakeRoundConfig of
// {round_id, num_clients, num_neighbors, threshold, vector_length,
// graph_seed}) and to lay out and weight its input vector.
//
// Input vector (P = vector_length words, fixed-point, secagg/fixed_point.h
// with clip / fraction_bits / max_clients = num_clients):
//   dense group         the elements of the tensors named in `layout`, in
//                       that order, each row-major; elements outside the
//                       client's coverage are 0. P = their total size.
//   seed-scalar group   the K seed scalars; `layout` is empty, P = K.
// Every value is multiplied by weight / weight_unit before encoding, where
// weight = num_examples when weight_by_examples, else 1. The server knows
// each contributor's num_examples and coverage (public) and so forms the
// same coverage-weighted mean as in a plaintext round from the sum alone.
struct SecAggTask {
  enum class Group { kDense = 0, kSeedScalars = 1 };

  bool enabled = false;
  Group group = Group::kDense;
  uint64_t round_id = 0;        // binds every SecAgg message to (run, round, attempt, group)
  uint32_t index = 0;           // this client's index in the group, 0..num_clients-1
  int num_clients = 0;          // n >= 2
  int num_neighbors = 0;        // k, resolved (never 0 here)
  double threshold = 0.5;       // t as a fraction of k, as the server passed it
  int threshold_count = 0;      // t as the server resolved it (for logs and the wire)
  int64_t vector_length = 0;    // P
  std::array<uint8_t, 32> graph_seed{};  // public randomness of the k-regular graph
  double clip = 1.0;            // fixed-point clipping range +-clip
  int fraction_bits = 16;
  std::vector<std::string> layout;
  uint64_t weight_unit = 1;     // nominal examples: local_steps * batch_size * grad_accumulation
  bool weight_by_examples = true;  // false under DP (every client weighs 1)

  bool operator==(const SecAggTask&) const = default;
};

// One client's work for one round. The dense update must declare a coverage
// contained in `coverage` (the same tensors or fewer, ranks at most those
// given); in SecAgg rounds it is exactly `coverage`.
struct Task {
  int64_t round = 0;
  bool evaluate_only = false;   // evaluation round: evaluate the global state, Report, no update

  Method method = Method::kLora;
  int lora_rank = 0;            // kLora (and kPartial over adapters): r_i <= r_max
  int top_blocks = 0;           // kPartial: k
  bool partial_full_weights = false;

  int local_steps = 0;
  int batch_size = 0;
  int grad_accumulation = 1;
  int seq_len = 0;
  double learning_rate = 0.0;
  double weight_decay = 0.0;
  double grad_clip = 0.0;
  double fedprox_mu = 0.0;      // FedProx proximal term; 0 = off

  // Zeroth order. `seed_pool` holds the round's K shared seeds
  // (zeroth_order/seed_pool.h); the update is then kSeedScalars with K
  // values. Empty: a dense zeroth-order update over `coverage`.
  std::vector<uint64_t> seed_pool;
  double zo_epsilon = 1e-3;
  double zo_learning_rate = 1e-4;
  int zo_perturbations = 1;

  // Seed of the client's own draws this round (batch order, dropout,
  // perturbation step seeds): f(run seed, round, client id).
  uint64_t round_seed = 0;
  Coverage coverage;
  std::string model_version;    // the global state to train from (SHA-256 hex)

  // Client-level DP (aggregation/dp.h), as the client must apply it:
  // distributed mode: ClipAndAddDistributedNoise(update, dp, dp_noise_clients,
  // a seed secret from the server); central mode in a SecAgg round: clip to
  // dp.clip_norm only (the server cannot clip what it cannot see, and adds
  // the noise itself); central mode in a plaintext round: nothing.
  DpOptions dp;                 // dp.enabled = false: none
  int dp_noise_clients = 1;

  SecAggTask secagg;
};

enum class PollKind { kWait, kTrain, kStop };
inline const char* PollKindName(PollKind kind) {  // "wait" | "train" | "stop"
  switch (kind) {
    case PollKind::kWait: return "wait";
    case PollKind::kTrain: return "train";
    case PollKind::kStop: return "stop";
  }
  return "unknown";
}

// The answer to a poll.
struct PollResponse {
  PollKind kind = PollKind::kWait;
  // kTrain: the binding the client's replies carry (the client sets
  // `sequence` and, per message, `phase`).
  Binding binding;
  Task task;                    // kTrain only
  std::string model_version;    // the current global state (download when it differs)
  int64_t deadline_ms = 0;      // kTrain: when the round stops collecting (server clock)
  int64_t retry_after_ms = 0;   // kWait: poll again after this long
  std::string reason;           // kWait / kStop: why, for the client's log
};

struct PollRequest {
  std::string client_id;
  std::string have_model_version;  // "" when the client holds none
};

struct EnrollRequest {
  std::string token;    // one-time enrollment token
  std::string name;     // human-readable device name
  DeviceProfile profile;
};

struct EnrollResponse {
  std::string client_id;
  std::string client_secret;  // bytes; the HMAC key of the client's requests
  std::string run_id;
};

// The public part of an upload (fedfm.proto UploadHeader): what the
// coordinator may know about a client's contribution without seeing its
// values. Carried with a SecAgg masked input; a plaintext upload carries
// the same fields inside its Update.
struct UploadInfo {
  uint64_t num_examples = 0;
  std::map<std::string, double> metrics;
  uint64_t peak_memory_bytes = 0;
};

// Evaluation metrics of the global state on a client's held-out data
// ("eval_loss", "eval_accuracy", ...).
struct EvalReport {
  std::map<std::string, double> metrics;
  uint64_t num_examples = 0;
};

// The answer to a fetch of a message the coordinator routes to a client once
// a SecAgg+ phase has closed (neighbour keys, routed shares, the unmask
// request): `message` is empty while the phase is still open; ask again
// after retry_after_ms.
template <typename T>
struct Routed {
  std::optional<T> message;
  int64_t retry_after_ms = 0;
};

// A model version ready to download: the global trainable state as a
// TensorMap and as the safetensors bytes whose SHA-256 is `version` (what a
// client verifies after a download).
struct ModelSnapshot {
  std::string version;
  TensorMap state;
  std::shared_ptr<const std::vector<std::byte>> safetensors;
};

}  // namespace fedfm::protocols

#endif  // FEDFM_PROTOCOLS_TASK_H_
