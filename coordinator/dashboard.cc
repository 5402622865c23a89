#include "coordinator/dashboard.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "coordinator/dashboard_assets.h"
#include "nlohmann/json.hpp"
#include "protocols/check.h"
#include "protocols/config/config.h"

namespace fedfm::coordinator {
namespace {

using protocols::Method;

// The methods a client can train with, in display order ("auto" is resolved
// before a client trains, so it never appears in a round).
constexpr Method kMethods[] = {Method::kLora, Method::kPartial, Method::kZerothOrder};

void AddStats(MethodStats& total, const MethodStats& add) {
  total.participants += add.participants;
  total.bytes_up += add.bytes_up;
  total.bytes_down += add.bytes_down;
}

nlohmann::json Number(double value) {
  if (!std::isfinite(value)) return nullptr;
  return value;
}

nlohmann::json MetricsJson(const std::map<std::string, double>& metrics) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [name, value] : metrics) out[name] = Number(value);
  return out;
}

nlohmann::json StatsJson(const MethodStats& stats) {
  return {{"participants", stats.participants}, {"bytes_up", stats.bytes_up}, {"bytes_down", stats.bytes_down}};
}

nlohmann::json MethodStatsJson(const std::map<Method, MethodStats>& methods) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [method, stats] : methods) out[protocols::MethodName(method)] = StatsJson(stats);
  return out;
}

// A sample value in the exposition format: shortest round-trip decimal,
// "NaN", "+Inf" or "-Inf".
std::string PromValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  FEDFM_CHECK(ec == std::errc());
  return std::string(buf, end);
}

std::string PromValue(int64_t value) { return absl::StrCat(value); }

// A label value with backslash, double quote and newline escaped.
std::string PromLabel(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void PromFamily(std::string& out, const char* name, const char* type, const char* help) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

template <typename T>
void PromSample(std::string& out, const char* name, const std::string& labels, T value) {
  absl::StrAppend(&out, name, labels.empty() ? "" : "{", labels, labels.empty() ? "" : "}", " ", PromValue(value),
                  "\n");
}

std::string MethodLabel(Method method) { return absl::StrCat("method=\"", protocols::MethodName(method), "\""); }

MethodStats StatsOf(const std::map<Method, MethodStats>& methods, Method method) {
  auto it = methods.find(method);
  return it == methods.end() ? MethodStats{} : it->second;
}

HttpResponse Respond(int status, std::string content_type, std::string body) {
  HttpResponse response;
  response.status = status;
  response.content_type = std::move(content_type);
  response.body = std::move(body);
  response.headers.emplace_back("X-Content-Type-Options", "nosniff");
  return response;
}

HttpResponse Asset(std::string_view bytes, const char* content_type) {
  HttpResponse response = Respond(200, content_type, std::string(bytes));
  response.headers.emplace_back("Cache-Control", "public, max-age=86400");
  return response;
}

// The value of `key` in an undecoded query string ("since=3&x=y"), if any.
std::optional<std::string_view> QueryValue(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    std::size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    std::size_t eq = pair.find('=');
    if (pair.substr(0, eq) == key) {
      return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

HttpResponse Handle(DashboardSource& source, const HttpRequest& request) {
  const std::string& path = request.path;
  if (path == "/" || path == "/index.html") {
    HttpResponse response = Respond(200, "text/html; charset=utf-8", std::string(embedded::DashboardPageHtml()));
    response.headers.emplace_back("Cache-Control", "no-cache");
    response.headers.emplace_back("Content-Security-Policy",
                                  "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                  "style-src 'self' 'unsafe-inline'; img-src 'self' data:");
    return response;
  }
  if (path == "/dygraph.min.js") return Asset(embedded::DygraphMinJs(), "text/javascript; charset=utf-8");
  if (path == "/dygraph.min.css") return Asset(embedded::DygraphMinCss(), "text/css; charset=utf-8");
  if (path == "/api/status" || path == "/metrics") {
    // /metrics needs no per-round history: only totals and the last round.
    int64_t after_round = path == "/metrics" ? std::numeric_limits<int64_t>::max() : -1;
    if (path == "/api/status") {
      if (std::optional<std::string_view> since = QueryValue(request.query, "since")) {
        auto [end, ec] = std::from_chars(since->data(), since->data() + since->size(), after_round);
        if (ec != std::errc() || end != since->data() + since->size()) {
          return Respond(400, "text/plain; charset=utf-8",
                         absl::StrCat("400 Bad Request: query \"since\" must be an integer round, got \"",
                                      std::string(*since), "\"\n"));
        }
      }
    }
    absl::StatusOr<DashboardSnapshot> snapshot = source.Snapshot(after_round);
    if (!snapshot.ok()) {
      return Respond(500, "text/plain; charset=utf-8",
                     absl::StrCat("500 Internal Server Error: ", snapshot.status().ToString(), "\n"));
    }
    HttpResponse response = path == "/metrics"
                                ? Respond(200, "text/plain; version=0.0.4; charset=utf-8",
                                          DashboardPrometheusText(*snapshot))
                                : Respond(200, "application/json", DashboardStatusJson(*snapshot));
    response.headers.emplace_back("Cache-Control", "no-store");
    return response;
  }
  return Respond(404, "text/plain; charset=utf-8", absl::StrCat("404 Not Found: ", request.path, "\n"));
}

}  // namespace

void InMemoryDashboardSource::SetStatus(const DashboardStatus& status) {
  std::lock_guard<std::mutex> lock(mu_);
  status_ = status;
}

void InMemoryDashboardSource::AddRound(const RoundSummary& round) {
  std::lock_guard<std::mutex> lock(mu_);
  FEDFM_CHECK_MSG(history_.empty() || round.round > history_.back().round,
                  "InMemoryDashboardSource::AddRound: round numbers must increase");
  for (const auto& [name, value] : round.metrics) status_.last_metrics[name] = value;
  for (const auto& [method, stats] : round.methods) AddStats(totals_[method], stats);
  history_.push_back(round);
}

void InMemoryDashboardSource::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  history_.clear();
  totals_.clear();
}

absl::StatusOr<DashboardSnapshot> InMemoryDashboardSource::Snapshot(int64_t after_round) {
  std::lock_guard<std::mutex> lock(mu_);
  DashboardSnapshot snapshot;
  snapshot.status = status_;
  auto first = std::upper_bound(history_.begin(), history_.end(), after_round,
                                [](int64_t round, const RoundSummary& summary) { return round < summary.round; });
  snapshot.history.assign(first, history_.end());
  snapshot.history_size = static_cast<int64_t>(history_.size());
  snapshot.totals = totals_;
  if (!history_.empty()) snapshot.last_round = history_.back();
  return snapshot;
}

std::string DashboardStatusJson(const DashboardSnapshot& snapshot) {
  const DashboardStatus& s = snapshot.status;
  nlohmann::json participants = nlohmann::json::object();
  for (const auto& [method, count] : s.participants) participants[protocols::MethodName(method)] = count;
  nlohmann::json status = {
      {"run_id", s.run_id},
      {"run_name", s.run_name},
      {"round", s.round},
      {"total_rounds", s.total_rounds},
      {"phase", s.phase},
      {"clients_connected", s.clients_connected},
      {"clients_enrolled", s.clients_enrolled},
      {"model_version", s.model_version},
      {"last_metrics", MetricsJson(s.last_metrics)},
      {"participants", participants},
  };
  nlohmann::json history = nlohmann::json::array();
  for (const RoundSummary& round : snapshot.history) {
    history.push_back({
        {"round", round.round},
        {"committed", round.committed},
        {"metrics", MetricsJson(round.metrics)},
        {"methods", MethodStatsJson(round.methods)},
        {"duration_s", Number(round.duration_s)},
        {"virtual_time_s", Number(round.virtual_time_s)},
        {"wall_time_s", Number(round.wall_time_s)},
    });
  }
  nlohmann::json out = {
      {"status", std::move(status)},
      {"history_size", snapshot.history_size},
      {"totals", MethodStatsJson(snapshot.totals)},
      {"history", std::move(history)},
  };
  // Invalid UTF-8 (a run name from a config file) is replaced, not thrown.
  return out.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

std::string DashboardPrometheusText(const DashboardSnapshot& snapshot) {
  const DashboardStatus& s = snapshot.status;
  std::string out;
  PromFamily(out, "fedfm_run_info", "gauge", "The run this coordinator serves (always 1).");
  PromSample(out, "fedfm_run_info",
             absl::StrCat("run_id=\"", PromLabel(s.run_id), "\",run_name=\"", PromLabel(s.run_name), "\""),
             int64_t{1});
  PromFamily(out, "fedfm_round", "gauge", "The round in progress (the last one when the run is over).");
  PromSample(out, "fedfm_round", "", s.round);
  PromFamily(out, "fedfm_rounds_planned", "gauge", "Rounds the run is configured for (0: unknown).");
  PromSample(out, "fedfm_rounds_planned", "", s.total_rounds);
  PromFamily(out, "fedfm_rounds_total", "counter", "Rounds finished (committed or failed).");
  PromSample(out, "fedfm_rounds_total", "", snapshot.history_size);
  PromFamily(out, "fedfm_clients_connected", "gauge", "Clients seen within the liveness window.");
  PromSample(out, "fedfm_clients_connected", "", s.clients_connected);
  PromFamily(out, "fedfm_clients_enrolled", "gauge", "Clients enrolled.");
  PromSample(out, "fedfm_clients_enrolled", "", s.clients_enrolled);

  auto eval = s.last_metrics.find(kMetricEvalLoss);
  auto train = s.last_metrics.find(kMetricTrainLoss);
  auto loss = eval != s.last_metrics.end() ? eval : train;
  if (loss != s.last_metrics.end()) {
    PromFamily(out, "fedfm_round_loss", "gauge", "Latest eval_loss, or train_loss when no eval ran.");
    PromSample(out, "fedfm_round_loss", "", loss->second);
  }
  if (!s.last_metrics.empty()) {
    PromFamily(out, "fedfm_round_metric", "gauge", "Latest value of each round-level metric.");
    for (const auto& [name, value] : s.last_metrics) {
      PromSample(out, "fedfm_round_metric", absl::StrCat("name=\"", PromLabel(name), "\""), value);
    }
  }
  PromFamily(out, "fedfm_round_participants", "gauge", "Participants of the round in progress, by method.");
  for (Method method : kMethods) {
    auto it = s.participants.find(method);
    PromSample(out, "fedfm_round_participants", MethodLabel(method),
               it == s.participants.end() ? int64_t{0} : it->second);
  }
  if (snapshot.last_round.has_value()) {
    PromFamily(out, "fedfm_round_duration_seconds", "gauge", "Wall duration of the latest finished round.");
    PromSample(out, "fedfm_round_duration_seconds", "", snapshot.last_round->duration_s);
  }
  PromFamily(out, "fedfm_participants_total", "counter", "Accepted client updates over all rounds, by method.");
  for (Method method : kMethods) {
    PromSample(out, "fedfm_participants_total", MethodLabel(method), StatsOf(snapshot.totals, method).participants);
  }
  PromFamily(out, "fedfm_bytes_up_total", "counter", "Bytes uploaded by clients over all rounds, by method.");
  for (Method method : kMethods) {
    PromSample(out, "fedfm_bytes_up_total", MethodLabel(method), StatsOf(snapshot.totals, method).bytes_up);
  }
  PromFamily(out, "fedfm_bytes_down_total", "counter", "Bytes sent to clients over all rounds, by method.");
  for (Method method : kMethods) {
    PromSample(out, "fedfm_bytes_down_total", MethodLabel(method), StatsOf(snapshot.totals, method).bytes_down);
  }
  return out;
}

HttpHandler MakeDashboardHandler(DashboardSource* source) {
  FEDFM_CHECK(source != nullptr);
  return [source](const HttpRequest& request) { return Handle(*source, request); };
}

absl::StatusOr<std::unique_ptr<HttpServer>> StartDashboard(const std::string& address, DashboardSource* source) {
  HttpServerOptions options;
  options.address = address;
  return HttpServer::Start(options, MakeDashboardHandler(source));
}

}  // namespace fedfm::coordinator
