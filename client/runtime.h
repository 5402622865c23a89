// ClientRuntime: the device loop. Enroll once, then repeatedly
//   poll -> download the global state when its version changed ->
//   train (Trainer) or evaluate -> upload: plaintext Update, or the SecAgg+
//   client state machine through the link (advertise keys, share keys, the
//   fixed-point masked input, unmask) -> report evaluation metrics
// until the coordinator says stop.
//
// SecAgg+ input: the client's delta (or seed scalars) is multiplied by
// w / task.secagg.weight_unit, w = num_examples (1 when
// !weight_by_examples), laid out as task.secagg.layout says, and encoded
// with secagg::FixedPointCodec(clip, fraction_bits, num_clients). Client-
// level DP is applied before (task.dp).
//
// The loop is a non-blocking state machine: Step() performs at most one
// exchange with the coordinator (plus the training it may trigger) and says
// how long to wait before the next step. Run() loops Step() and sleeps
// through the injected ClientEnv, so tests and the simulation drive it on
// virtual time and never sleep for real.
//
// Link failures (transport: Unavailable, DeadlineExceeded) are retried with
// exponential backoff and jitter: delay_n = min(max, initial * multiplier^n)
// scaled by a factor drawn uniformly from [1 - jitter, 1] (seeded, so runs
// replay exactly). After max_consecutive_failures (when > 0), Step() returns
// the last failure. Refusals by the coordinator abandon the round in hand
// and go back to polling.
//
// Not thread-safe, except RequestStop().
#ifndef FEDFM_CLIENT_RUNTIME_H_
#define FEDFM_CLIENT_RUNTIME_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/coordinator_link.h"
#include "client/trainer.h"
#include "protocols/device.h"
#include "protocols/task.h"

namespace fedfm::client {

// Time and sleeping, injected (as coordinator::Clock is on the server).
class ClientEnv {
 public:
  virtual ~ClientEnv() = default;
  virtual int64_t NowMs() = 0;
  virtual void SleepMs(int64_t ms) = 0;
};

// The process's clocks: system_clock and std::this_thread::sleep_for.
ClientEnv& SystemClientEnv();

struct ClientRuntimeOptions {
  // Enrollment: a token, or an identity enrolled earlier (then the token is
  // not used).
  std::string token;
  std::optional<protocols::EnrollResponse> identity;
  std::string name = "device";
  protocols::DeviceProfile profile;

  // Reconnect backoff.
  int64_t backoff_initial_ms = 500;
  int64_t backoff_max_ms = 30'000;
  double backoff_multiplier = 2.0;
  double backoff_jitter = 0.5;        // fraction in [0, 1]
  int max_consecutive_failures = 0;   // 0: retry forever
  uint64_t jitter_seed = 0;           // seeds the jitter draws

  // A waiting answer's retry_after_ms is capped at this.
  int64_t max_poll_wait_ms = 30'000;
  // First Binding.sequence - 1. 0: NowMs() * 1000 at construction, so a
  // restarted device keeps counting above what it used before.
  uint64_t sequence_start = 0;
  // Evaluate the global state and Report after each training round too.
  bool report_after_training = false;

  // SecAgg+ client randomness: the system CSPRNG unless a seed is given
  // (tests and simulations that must replay bit-exactly).
  std::optional<std::array<uint8_t, 32>> secagg_seed;
  int secagg_threads = 1;
  // Seed of distributed-DP noise (keep it from the coordinator); mixed with
  // the round. 0: drawn from the system CSPRNG once.
  uint64_t dp_seed = 0;
};

// What one Step did.
enum class StepEvent {
  kEnrolled,
  kWaiting,       // the coordinator had nothing for us
  kTaskReceived,  // a poll gave us a task
  kDownloaded,    // fetched a new global state
  kSecAggProgress,  // one SecAgg+ message sent or received, or not ready yet
  kUploaded,      // update (plain or masked) accepted
  kRoundDone,     // our part of the round is over (after unmask / upload / report)
  kRefused,       // the coordinator refused a message; the round was abandoned
  kLinkFailure,   // transport failure; retrying after backoff
  kStopped,       // the coordinator said stop, or RequestStop()
};
const char* StepEventName(StepEvent event);

struct StepResult {
  StepEvent event = StepEvent::kWaiting;
  int64_t next_in_ms = 0;   // wait this long before the next Step
  std::string detail;       // the refusal or failure message, the round, ...
};

// Counters for logs and tests.
struct ClientRuntimeStats {
  int64_t polls = 0;
  int64_t downloads = 0;
  int64_t rounds_trained = 0;
  int64_t rounds_evaluated = 0;
  int64_t updates_accepted = 0;
  int64_t refusals = 0;
  int64_t link_failures = 0;
  int64_t backoff_ms_total = 0;
  uint64_t bytes_up = 0;     // payload bytes: encoded updates, SecAgg messages
  uint64_t bytes_down = 0;   // model downloads, routed SecAgg messages
  std::string last_refusal;
};

class ClientRuntime {
 public:
  // `link`, `trainer`, `data` and `env` must outlive the runtime.
  ClientRuntime(CoordinatorLink& link, Trainer& trainer, Dataset& data, ClientEnv& env,
                ClientRuntimeOptions options);
  ~ClientRuntime();
  ClientRuntime(const ClientRuntime&) = delete;
  ClientRuntime& operator=(const ClientRuntime&) = delete;

  // One step (see above). Errors end the device's run: enrollment refused,
  // a poll answered NotFound or PermissionDenied (the coordinator does not
  // know the device, or revoked it), more than max_consecutive_failures
  // transport failures in a row, a trainer error other than
  // ResourceExhausted (which skips the round).
  absl::StatusOr<StepResult> Step();

  // Steps until the coordinator says stop (OK), RequestStop() (OK) or a
  // Step error (returned).
  absl::Status Run();

  // Makes Run() return after the step in progress. Thread-safe.
  void RequestStop() { stop_requested_.store(true); }

  // After enrollment: the identity to keep for a restart.
  const std::optional<protocols::EnrollResponse>& identity() const;
  const ClientRuntimeStats& stats() const;
  bool stopped() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> stop_requested_{false};
};

}  // namespace fedfm::client

#endif  // FEDFM_CLIENT_RUNTIME_H_
