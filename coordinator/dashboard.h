// The coordinator's live dashboard: what it shows (DashboardSource) and how it
// is served (StartDashboard, over coordinator/http_server.h).
//
// The dashboard never reaches into the round engine or the store: it reads a
// DashboardSource, an interface they implement (or feed, through
// InMemoryDashboardSource), and renders four things from one snapshot:
//   GET /                  a self-contained HTML page with live charts
//                          (dygraphs, served from memory: works offline)
//   GET /api/status        the snapshot as JSON (format below)
//   GET /metrics           Prometheus text exposition format 0.0.4
//   GET /dygraph.min.js, /dygraph.min.css   the embedded chart library
// Anything else is 404; methods other than GET and HEAD are 405.
//
// /api/status?since=K returns only the rounds numbered above K in "history"
// (the page polls incrementally); "history_size" is always the total.
//
// Torch-free; Asio stays in http_server.cc.
#ifndef FEDFM_COORDINATOR_DASHBOARD_H_
#define FEDFM_COORDINATOR_DASHBOARD_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/http_server.h"
#include "protocols/config/options.h"

namespace fedfm::coordinator {

// Traffic and participation of one method (LoRA, partial layers, zeroth
// order) in one round, or summed over rounds.
struct MethodStats {
  int64_t participants = 0;  // clients whose update was accepted
  int64_t bytes_up = 0;      // client -> coordinator
  int64_t bytes_down = 0;    // coordinator -> client

  bool operator==(const MethodStats&) const = default;
};

// Metric names the page and /metrics give a meaning to; any other name is
// shown in the JSON and exported as fedfm_round_metric{name="..."}.
inline constexpr char kMetricTrainLoss[] = "train_loss";
inline constexpr char kMetricEvalLoss[] = "eval_loss";
inline constexpr char kMetricEvalAccuracy[] = "eval_accuracy";

// One finished round (committed or failed).
struct RoundSummary {
  int64_t round = 0;  // round number; strictly increasing within a run
  bool committed = true;
  // Round-level metrics by name ("train_loss", "eval_loss", "eval_accuracy",
  // ...). NaN is allowed (a diverged loss) and becomes null in JSON.
  std::map<std::string, double> metrics;
  std::map<protocols::Method, MethodStats> methods;  // methods absent had no participant
  double duration_s = 0;  // wall seconds from select to commit
  // Seconds since the run started when the round ended: virtual time is the
  // simulation's clock (equal to wall time in a real deployment).
  double virtual_time_s = 0;
  double wall_time_s = 0;
};

// The run as it is now.
struct DashboardStatus {
  std::string run_id;
  std::string run_name;
  int64_t round = 0;         // the round in progress (or the last one, when finished)
  int64_t total_rounds = 0;  // as configured; 0 when unknown
  // What the round engine is doing, for display: "idle", "select",
  // "configure", "train", "secagg", "aggregate", "commit", "finished",
  // "failed", ...
  std::string phase = "idle";
  int64_t clients_connected = 0;  // polled within the liveness window
  int64_t clients_enrolled = 0;
  std::string model_version;  // SHA-256 hex of the current global state; "" before round 0
  std::map<std::string, double> last_metrics;  // from the latest round that reported each
  std::map<protocols::Method, int64_t> participants;  // of the round in progress, by method
};

// Everything one page refresh or one scrape needs, read at one instant.
struct DashboardSnapshot {
  DashboardStatus status;
  // Rounds numbered above the `after_round` the snapshot was taken for, by
  // round number.
  std::vector<RoundSummary> history;
  // Totals over every recorded round, whatever `after_round` was.
  int64_t history_size = 0;  // rounds recorded
  std::map<protocols::Method, MethodStats> totals;
  // The latest recorded round, whatever `after_round` was; nullopt before
  // the first.
  std::optional<RoundSummary> last_round;
};

// What the dashboard reads. Implemented by the round engine or the store,
// and by InMemoryDashboardSource. Implementations must be safe to call from
// the HTTP server's threads concurrently with the engine's updates.
class DashboardSource {
 public:
  virtual ~DashboardSource() = default;
  // The status, the rounds numbered above `after_round` (pass -1 for all,
  // INT64_MAX for none: /metrics needs only totals and the last round), and
  // totals over all rounds. An error (say the store is unreadable) is
  // answered with HTTP 500 carrying the message.
  virtual absl::StatusOr<DashboardSnapshot> Snapshot(int64_t after_round) = 0;
};

// A DashboardSource held in memory: the engine (or the simulation) pushes
// status changes and finished rounds, the dashboard reads. Thread-safe.
class InMemoryDashboardSource final : public DashboardSource {
 public:
  InMemoryDashboardSource() = default;

  void SetStatus(const DashboardStatus& status);
  // Edits the status in place under the lock (`edit` must not call back
  // into this source).
  template <typename Edit>
  void UpdateStatus(Edit&& edit) {
    std::lock_guard<std::mutex> lock(mu_);
    edit(status_);
  }
  // Appends a finished round and folds its metrics into
  // status.last_metrics. A round numbered at or below the last one recorded
  // is a bug in the caller (FEDFM_CHECK).
  void AddRound(const RoundSummary& round);
  // Forgets the history and the totals (a new run).
  void Clear();

  absl::StatusOr<DashboardSnapshot> Snapshot(int64_t after_round) override;

 private:
  std::mutex mu_;
  DashboardStatus status_;
  std::vector<RoundSummary> history_;
  std::map<protocols::Method, MethodStats> totals_;
};

// The JSON of /api/status:
//   {"status": {"run_id", "run_name", "round", "total_rounds", "phase",
//               "clients_connected", "clients_enrolled", "model_version",
//               "last_metrics": {name: value|null},
//               "participants": {"lora": n, ...}},
//    "history_size": n,
//    "totals": {"lora": {"participants", "bytes_up", "bytes_down"}, ...},
//    "history": [{"round", "committed", "metrics": {name: value|null},
//                 "methods": {"lora": {"participants", "bytes_up",
//                                      "bytes_down"}, ...},
//                 "duration_s", "virtual_time_s", "wall_time_s"}, ...]}
// Methods are named as in the config ("lora", "partial", "zo"); non-finite
// numbers are null.
std::string DashboardStatusJson(const DashboardSnapshot& snapshot);

// The Prometheus text exposition (format 0.0.4) of /metrics, every family
// with # HELP and # TYPE:
//   fedfm_run_info{run_id,run_name} 1            gauge
//   fedfm_round                                  gauge, round in progress
//   fedfm_rounds_planned                         gauge, total_rounds
//   fedfm_rounds_total                           counter, rounds recorded
//   fedfm_clients_connected, fedfm_clients_enrolled         gauges
//   fedfm_round_loss                             gauge: latest eval_loss, else
//                                                latest train_loss (absent if neither)
//   fedfm_round_metric{name}                     gauge, each latest metric
//   fedfm_round_participants{method}             gauge, round in progress
//   fedfm_round_duration_seconds                 gauge, last_round (absent before one)
//   fedfm_participants_total{method}             counter
//   fedfm_bytes_up_total{method}, fedfm_bytes_down_total{method}  counters
// Every method ("lora", "partial", "zo") is always listed, 0 when unused.
std::string DashboardPrometheusText(const DashboardSnapshot& snapshot);

// The dashboard's request handler over `source` (not owned; must outlive
// every server using the handler).
HttpHandler MakeDashboardHandler(DashboardSource* source);

// Serves the dashboard over `source` on `address` ("127.0.0.1:8080"; port 0
// picks a free one, see HttpServer::port()). Errors as HttpServer::Start.
absl::StatusOr<std::unique_ptr<HttpServer>> StartDashboard(const std::string& address,
                                                           DashboardSource* source);

}  // namespace fedfm::coordinator

#endif  // FEDFM_COORDINATOR_DASHBOARD_H_
