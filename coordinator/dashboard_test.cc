#include "coordinator/dashboard.h"

#include <atomic>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/dashboard_assets.h"
#include "coordinator/http_server_test_util.h"
#include "protocols/config/config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace fedfm::coordinator {
namespace {

using protocols::Method;
using ::testing::HasSubstr;
using testing::Fetch;
using testing::Get;
using testing::RawConnection;

// Rounds 1..n with values drawn from `rng`: every method in some rounds,
// LoRA in all.
std::vector<RoundSummary> RandomRounds(int n, std::mt19937& rng) {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::uniform_int_distribution<int64_t> bytes(1000, 50'000'000);
  std::uniform_int_distribution<int64_t> clients(1, 20);
  std::vector<RoundSummary> rounds;
  for (int r = 1; r <= n; ++r) {
    RoundSummary round;
    round.round = r;
    round.metrics[kMetricTrainLoss] = 4.0 - 0.1 * r + unit(rng);
    if (r % 2 == 0) round.metrics[kMetricEvalLoss] = 4.2 - 0.1 * r + unit(rng);
    round.metrics[kMetricEvalAccuracy] = unit(rng);
    round.methods[Method::kLora] = {clients(rng), bytes(rng), bytes(rng)};
    if (r % 3 != 0) round.methods[Method::kZerothOrder] = {clients(rng), bytes(rng) / 1000, bytes(rng)};
    if (r % 4 == 1) round.methods[Method::kPartial] = {clients(rng), bytes(rng), bytes(rng)};
    round.duration_s = 1.0 + 10 * unit(rng);
    round.wall_time_s = r * 12.5;
    round.virtual_time_s = r * 30.0;
    rounds.push_back(round);
  }
  return rounds;
}

DashboardStatus SomeStatus() {
  DashboardStatus status;
  status.run_id = "run-7f3a";
  status.run_name = "tiny \"shakespeare\"\nrun";
  status.round = 6;
  status.total_rounds = 20;
  status.phase = "train";
  status.clients_connected = 11;
  status.clients_enrolled = 16;
  status.model_version = std::string(64, 'c');
  status.participants = {{Method::kLora, 3}, {Method::kZerothOrder, 5}};
  return status;
}

// A source with SomeStatus() and `n` random rounds.
struct Fixture {
  explicit Fixture(int n, uint32_t seed = 42) : rng(seed) {
    source.SetStatus(SomeStatus());
    rounds = RandomRounds(n, rng);
    for (const RoundSummary& round : rounds) source.AddRound(round);
  }
  std::mt19937 rng;
  std::vector<RoundSummary> rounds;
  InMemoryDashboardSource source;
};

MethodStats Total(const std::vector<RoundSummary>& rounds, Method method) {
  MethodStats total;
  for (const RoundSummary& round : rounds) {
    auto it = round.methods.find(method);
    if (it == round.methods.end()) continue;
    total.participants += it->second.participants;
    total.bytes_up += it->second.bytes_up;
    total.bytes_down += it->second.bytes_down;
  }
  return total;
}

TEST(DashboardSourceTest, InMemoryKeepsHistoryTotalsAndLatestMetrics) {
  Fixture f(7);
  absl::StatusOr<DashboardSnapshot> all = f.source.Snapshot(-1);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->history_size, 7);
  ASSERT_EQ(all->history.size(), 7u);
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(all->history[i].round, f.rounds[i].round);
    EXPECT_EQ(all->history[i].metrics, f.rounds[i].metrics);
    EXPECT_EQ(all->history[i].methods, f.rounds[i].methods);
  }
  for (Method method : {Method::kLora, Method::kPartial, Method::kZerothOrder}) {
    EXPECT_EQ(all->totals.at(method), Total(f.rounds, method)) << protocols::MethodName(method);
  }
  // Latest value of each metric: eval_loss last reported in round 6.
  EXPECT_EQ(all->status.last_metrics.at(kMetricTrainLoss), f.rounds[6].metrics.at(kMetricTrainLoss));
  EXPECT_EQ(all->status.last_metrics.at(kMetricEvalLoss), f.rounds[5].metrics.at(kMetricEvalLoss));
  EXPECT_EQ(all->status.run_name, SomeStatus().run_name);

  absl::StatusOr<DashboardSnapshot> since = f.source.Snapshot(4);
  ASSERT_TRUE(since.ok());
  ASSERT_EQ(since->history.size(), 3u);
  EXPECT_EQ(since->history.front().round, 5);
  EXPECT_EQ(since->history_size, 7);
  EXPECT_EQ(since->totals, all->totals);
  EXPECT_TRUE(f.source.Snapshot(7)->history.empty());

  f.source.UpdateStatus([](DashboardStatus& s) { s.phase = "aggregate"; });
  EXPECT_EQ(f.source.Snapshot(7)->status.phase, "aggregate");
  f.source.Clear();
  EXPECT_EQ(f.source.Snapshot(-1)->history_size, 0);
  EXPECT_TRUE(f.source.Snapshot(-1)->totals.empty());
}

TEST(DashboardSourceTest, RoundsMustIncrease) {
  InMemoryDashboardSource source;
  RoundSummary round;
  round.round = 3;
  source.AddRound(round);
  EXPECT_DEATH(source.AddRound(round), "round numbers must increase");
}

TEST(DashboardJsonTest, StatusJsonCarriesEverything) {
  Fixture f(5);
  RoundSummary nan_round;
  nan_round.round = 9;
  nan_round.committed = false;
  nan_round.metrics[kMetricTrainLoss] = std::numeric_limits<double>::quiet_NaN();
  f.source.AddRound(nan_round);
  nlohmann::json json = nlohmann::json::parse(DashboardStatusJson(*f.source.Snapshot(-1)));
  const nlohmann::json& s = json.at("status");
  EXPECT_EQ(s.at("run_id"), "run-7f3a");
  EXPECT_EQ(s.at("run_name"), SomeStatus().run_name);
  EXPECT_EQ(s.at("round"), 6);
  EXPECT_EQ(s.at("total_rounds"), 20);
  EXPECT_EQ(s.at("phase"), "train");
  EXPECT_EQ(s.at("clients_connected"), 11);
  EXPECT_EQ(s.at("clients_enrolled"), 16);
  EXPECT_EQ(s.at("model_version"), std::string(64, 'c'));
  EXPECT_EQ(s.at("participants").at("lora"), 3);
  EXPECT_EQ(s.at("participants").at("zo"), 5);
  EXPECT_TRUE(s.at("last_metrics").at(kMetricTrainLoss).is_null());  // NaN
  EXPECT_EQ(json.at("history_size"), 6);
  ASSERT_EQ(json.at("history").size(), 6u);
  for (int i = 0; i < 5; ++i) {
    const nlohmann::json& h = json.at("history")[i];
    const RoundSummary& r = f.rounds[i];
    EXPECT_EQ(h.at("round"), r.round);
    EXPECT_EQ(h.at("committed"), true);
    EXPECT_DOUBLE_EQ(h.at("metrics").at(kMetricTrainLoss).get<double>(), r.metrics.at(kMetricTrainLoss));
    EXPECT_DOUBLE_EQ(h.at("duration_s").get<double>(), r.duration_s);
    EXPECT_DOUBLE_EQ(h.at("virtual_time_s").get<double>(), r.virtual_time_s);
    EXPECT_DOUBLE_EQ(h.at("wall_time_s").get<double>(), r.wall_time_s);
    EXPECT_EQ(h.at("methods").size(), r.methods.size());
    const MethodStats& lora = r.methods.at(Method::kLora);
    EXPECT_EQ(h.at("methods").at("lora").at("bytes_up"), lora.bytes_up);
    EXPECT_EQ(h.at("methods").at("lora").at("bytes_down"), lora.bytes_down);
    EXPECT_EQ(h.at("methods").at("lora").at("participants"), lora.participants);
  }
  EXPECT_EQ(json.at("history")[5].at("committed"), false);
  EXPECT_TRUE(json.at("history")[5].at("metrics").at(kMetricTrainLoss).is_null());
  EXPECT_EQ(json.at("totals").at("zo").at("bytes_up"), Total(f.rounds, Method::kZerothOrder).bytes_up);
}

TEST(DashboardJsonTest, InvalidUtf8IsReplacedNotThrown) {
  DashboardSnapshot snapshot;
  snapshot.status.run_name = "bad \xff name";
  nlohmann::json json = nlohmann::json::parse(DashboardStatusJson(snapshot));
  EXPECT_THAT(json.at("status").at("run_name").get<std::string>(), HasSubstr("name"));
}

// Sample lines: name, optional {labels}, value.
const std::regex kSampleLine(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$)");

// Checks the exposition format: every sample's family has # HELP then
// # TYPE before its first sample, families are not interleaved. Returns
// "name{labels}" -> value text.
std::map<std::string, std::string> ParseExposition(const std::string& text) {
  std::map<std::string, std::string> samples;
  std::set<std::string> helped, typed, finished;
  std::string current;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      std::string name = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_FALSE(helped.count(name)) << "duplicate HELP " << name;
      helped.insert(name);
      if (!current.empty()) finished.insert(current);
      current = name;
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::string name = line.substr(7, line.find(' ', 7) - 7);
      std::string type = line.substr(line.rfind(' ') + 1);
      EXPECT_TRUE(type == "gauge" || type == "counter") << line;
      EXPECT_EQ(name, current) << "TYPE without HELP: " << line;
      typed.insert(name);
      continue;
    }
    std::smatch match;
    EXPECT_TRUE(std::regex_match(line, match, kSampleLine)) << "bad sample line: " << line;
    if (match.empty()) continue;
    std::string name = match[1];
    EXPECT_EQ(name, current) << "sample outside its family: " << line;
    EXPECT_TRUE(typed.count(name)) << line;
    EXPECT_FALSE(finished.count(name)) << line;
    samples[name + std::string(match[2])] = match[3];
  }
  EXPECT_TRUE(text.empty() || text.back() == '\n');
  return samples;
}

TEST(DashboardMetricsTest, PrometheusTextHasExpectedFamiliesAndValues) {
  Fixture f(6);
  std::string text = DashboardPrometheusText(*f.source.Snapshot(-1));
  std::map<std::string, std::string> samples = ParseExposition(text);
  EXPECT_THAT(text, HasSubstr("# TYPE fedfm_bytes_up_total counter\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE fedfm_round gauge\n"));
  EXPECT_THAT(text, HasSubstr("# HELP fedfm_rounds_total "));
  EXPECT_EQ(samples.at("fedfm_round"), "6");
  EXPECT_EQ(samples.at("fedfm_rounds_planned"), "20");
  EXPECT_EQ(samples.at("fedfm_rounds_total"), "6");
  EXPECT_EQ(samples.at("fedfm_clients_connected"), "11");
  EXPECT_EQ(samples.at("fedfm_clients_enrolled"), "16");
  // Run name with a quote and a newline, escaped.
  EXPECT_EQ(samples.at("fedfm_run_info{run_id=\"run-7f3a\",run_name=\"tiny \\\"shakespeare\\\"\\nrun\"}"), "1");
  // eval_loss of round 6 wins over train_loss; values round-trip exactly.
  EXPECT_EQ(std::stod(samples.at("fedfm_round_loss")), f.rounds[5].metrics.at(kMetricEvalLoss));
  EXPECT_EQ(std::stod(samples.at("fedfm_round_metric{name=\"eval_accuracy\"}")),
            f.rounds[5].metrics.at(kMetricEvalAccuracy));
  EXPECT_EQ(std::stod(samples.at("fedfm_round_duration_seconds")), f.rounds[5].duration_s);
  EXPECT_EQ(samples.at("fedfm_round_participants{method=\"lora\"}"), "3");
  EXPECT_EQ(samples.at("fedfm_round_participants{method=\"partial\"}"), "0");
  EXPECT_EQ(samples.at("fedfm_round_participants{method=\"zo\"}"), "5");
  for (Method method : {Method::kLora, Method::kPartial, Method::kZerothOrder}) {
    std::string label = absl::StrCat("{method=\"", protocols::MethodName(method), "\"}");
    MethodStats total = Total(f.rounds, method);
    EXPECT_EQ(samples.at("fedfm_bytes_up_total" + label), absl::StrCat(total.bytes_up)) << label;
    EXPECT_EQ(samples.at("fedfm_bytes_down_total" + label), absl::StrCat(total.bytes_down)) << label;
    EXPECT_EQ(samples.at("fedfm_participants_total" + label), absl::StrCat(total.participants)) << label;
  }
}

TEST(DashboardMetricsTest, EmptyRunAndSpecialValues) {
  DashboardSnapshot snapshot;
  std::map<std::string, std::string> samples = ParseExposition(DashboardPrometheusText(snapshot));
  EXPECT_EQ(samples.at("fedfm_rounds_total"), "0");
  EXPECT_EQ(samples.count("fedfm_round_loss"), 0u);
  EXPECT_EQ(samples.count("fedfm_round_duration_seconds"), 0u);
  EXPECT_EQ(samples.at("fedfm_bytes_up_total{method=\"partial\"}"), "0");

  snapshot.status.last_metrics[kMetricTrainLoss] = std::numeric_limits<double>::quiet_NaN();
  snapshot.status.last_metrics["grad_norm"] = std::numeric_limits<double>::infinity();
  snapshot.status.last_metrics["lr"] = 3e-4;
  samples = ParseExposition(DashboardPrometheusText(snapshot));
  EXPECT_EQ(samples.at("fedfm_round_loss"), "NaN");
  EXPECT_EQ(samples.at("fedfm_round_metric{name=\"grad_norm\"}"), "+Inf");
  EXPECT_EQ(std::stod(samples.at("fedfm_round_metric{name=\"lr\"}")), 3e-4);
}

class DashboardServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<HttpServer>> server = StartDashboard("127.0.0.1:0", &f_.source);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }
  int port() const { return server_->port(); }

  Fixture f_{8};
  std::unique_ptr<HttpServer> server_;
};

TEST_F(DashboardServerTest, ApiStatusIsTheSnapshotAsJson) {
  testing::ParsedResponse response = Get(port(), "/api/status");
  ASSERT_EQ(response.status, 200);
  EXPECT_EQ(response.Header("content-type"), "application/json");
  EXPECT_EQ(response.Header("cache-control"), "no-store");
  EXPECT_EQ(response.body, DashboardStatusJson(*f_.source.Snapshot(-1)));
  nlohmann::json json = nlohmann::json::parse(response.body);
  ASSERT_EQ(json.at("history").size(), 8u);
  EXPECT_DOUBLE_EQ(json.at("history")[7].at("metrics").at(kMetricTrainLoss).get<double>(),
                   f_.rounds[7].metrics.at(kMetricTrainLoss));

  nlohmann::json since = nlohmann::json::parse(Get(port(), "/api/status?since=5").body);
  ASSERT_EQ(since.at("history").size(), 3u);
  EXPECT_EQ(since.at("history")[0].at("round"), 6);
  EXPECT_EQ(since.at("history_size"), 8);
  EXPECT_EQ(nlohmann::json::parse(Get(port(), "/api/status?x=1&since=-1").body).at("history").size(), 8u);

  testing::ParsedResponse bad = Get(port(), "/api/status?since=abc");
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body, HasSubstr("\"abc\""));
}

TEST_F(DashboardServerTest, MetricsEndpoint) {
  testing::ParsedResponse response = Get(port(), "/metrics");
  ASSERT_EQ(response.status, 200);
  EXPECT_EQ(response.Header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  std::map<std::string, std::string> samples = ParseExposition(response.body);
  EXPECT_EQ(samples.at("fedfm_rounds_total"), "8");
  EXPECT_EQ(samples.at("fedfm_bytes_up_total{method=\"lora\"}"),
            absl::StrCat(Total(f_.rounds, Method::kLora).bytes_up));
}

TEST_F(DashboardServerTest, PageAndEmbeddedAssets) {
  testing::ParsedResponse page = Get(port(), "/");
  ASSERT_EQ(page.status, 200);
  EXPECT_EQ(page.Header("content-type"), "text/html; charset=utf-8");
  EXPECT_EQ(page.body, std::string(embedded::DashboardPageHtml()));
  EXPECT_THAT(page.body, HasSubstr("<script src=\"/dygraph.min.js\"></script>"));
  EXPECT_THAT(page.body, HasSubstr("id=\"chart-metrics\""));
  EXPECT_EQ(Get(port(), "/index.html").body, page.body);

  testing::ParsedResponse js = Get(port(), "/dygraph.min.js");
  ASSERT_EQ(js.status, 200);
  EXPECT_EQ(js.Header("content-type"), "text/javascript; charset=utf-8");
  EXPECT_THAT(js.body, HasSubstr("Dygraph"));
  EXPECT_EQ(js.body, std::string(embedded::DygraphMinJs()));
  testing::ParsedResponse css = Get(port(), "/dygraph.min.css");
  ASSERT_EQ(css.status, 200);
  EXPECT_THAT(css.body, HasSubstr(".dygraph-legend"));

  // Byte-identical to the files they were embedded from, where present.
  std::ifstream file("coordinator/dashboard_page.html", std::ios::binary);
  ASSERT_TRUE(file.is_open()) << "tests run from the repository root";
  std::string on_disk((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  EXPECT_EQ(page.body, on_disk);
  std::ifstream dygraph("/usr/share/javascript/dygraphs/dygraph.min.js", std::ios::binary);
  if (dygraph.is_open()) {
    std::string bytes((std::istreambuf_iterator<char>(dygraph)), std::istreambuf_iterator<char>());
    EXPECT_EQ(js.body, bytes);
  }
}

TEST_F(DashboardServerTest, UnknownPathsAre404AndWritesAre405) {
  for (const char* path : {"/nope", "/api", "/api/status/x", "/metrics.txt", "/favicon.ico"}) {
    EXPECT_EQ(Get(port(), path).status, 404) << path;
  }
  EXPECT_EQ(Fetch(port(), "POST", "/api/status").status, 405);
  EXPECT_EQ(Fetch(port(), "DELETE", "/").status, 405);
  RawConnection connection(port());
  ASSERT_TRUE(connection.Send("GET / HTTP/1.1\r\nX: " + std::string(20'000, 'x') + "\r\n\r\n"));
  EXPECT_EQ(testing::ParseResponse(connection.ReadAll()).status, 431);
}

// Records what each request asked of the source.
class RecordingSource final : public DashboardSource {
 public:
  absl::StatusOr<DashboardSnapshot> Snapshot(int64_t after_round) override {
    std::lock_guard<std::mutex> lock(mu_);
    asked_.push_back(after_round);
    return inner.Snapshot(after_round);
  }
  std::vector<int64_t> asked() {
    std::lock_guard<std::mutex> lock(mu_);
    return asked_;
  }
  InMemoryDashboardSource inner;

 private:
  std::mutex mu_;
  std::vector<int64_t> asked_;
};

TEST(DashboardServerSnapshotTest, MetricsAsksForNoHistory) {
  RecordingSource source;
  std::mt19937 rng(5);
  std::vector<RoundSummary> rounds = RandomRounds(4, rng);
  for (const RoundSummary& round : rounds) source.inner.AddRound(round);
  absl::StatusOr<std::unique_ptr<HttpServer>> server = StartDashboard("127.0.0.1:0", &source);
  ASSERT_TRUE(server.ok());
  std::map<std::string, std::string> samples = ParseExposition(Get((*server)->port(), "/metrics").body);
  EXPECT_EQ(std::stod(samples.at("fedfm_round_duration_seconds")), rounds.back().duration_s);
  EXPECT_EQ(samples.at("fedfm_rounds_total"), "4");
  Get((*server)->port(), "/api/status?since=2");
  Get((*server)->port(), "/api/status");
  EXPECT_EQ(source.asked(), (std::vector<int64_t>{std::numeric_limits<int64_t>::max(), 2, -1}));
  // The last round comes with every snapshot, history or not.
  absl::StatusOr<DashboardSnapshot> none = source.inner.Snapshot(std::numeric_limits<int64_t>::max());
  EXPECT_TRUE(none->history.empty());
  ASSERT_TRUE(none->last_round.has_value());
  EXPECT_EQ(none->last_round->round, 4);
}

class FailingSource final : public DashboardSource {
 public:
  absl::StatusOr<DashboardSnapshot> Snapshot(int64_t) override {
    return absl::UnavailableError("store: database is locked");
  }
};

TEST(DashboardServerErrorTest, SourceErrorIs500WithTheMessage) {
  FailingSource source;
  absl::StatusOr<std::unique_ptr<HttpServer>> server = StartDashboard("127.0.0.1:0", &source);
  ASSERT_TRUE(server.ok());
  testing::ParsedResponse response = Get((*server)->port(), "/api/status");
  EXPECT_EQ(response.status, 500);
  EXPECT_THAT(response.body, HasSubstr("database is locked"));
  EXPECT_EQ(Get((*server)->port(), "/metrics").status, 500);
  EXPECT_EQ(Get((*server)->port(), "/").status, 200);  // the page needs no snapshot
}

TEST(DashboardServerErrorTest, BadAddressNamesIt) {
  InMemoryDashboardSource source;
  absl::StatusOr<std::unique_ptr<HttpServer>> server = StartDashboard("localhost", &source);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("\"localhost\""));
}

// Readers poll while the engine pushes rounds: every response is a
// consistent snapshot (as many rounds as history_size, in order).
TEST(DashboardConcurrencyTest, ReadersSeeConsistentSnapshotsWhileRoundsArrive) {
  InMemoryDashboardSource source;
  source.SetStatus(SomeStatus());
  absl::StatusOr<std::unique_ptr<HttpServer>> server = StartDashboard("127.0.0.1:0", &source);
  ASSERT_TRUE(server.ok());
  int port = (*server)->port();
  std::mt19937 rng(7);
  std::vector<RoundSummary> rounds = RandomRounds(60, rng);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (const RoundSummary& round : rounds) {
      source.AddRound(round);
      source.UpdateStatus([&round](DashboardStatus& s) { s.round = round.round + 1; });
      std::this_thread::yield();
    }
    done = true;
  });
  std::atomic<int> consistent{0}, total{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      int64_t last_size = 0;
      for (int i = 0; i < 15 || !done; ++i) {
        testing::ParsedResponse response = Get(port, i % 3 == 2 ? "/metrics" : "/api/status");
        ++total;
        if (response.status != 200) continue;
        if (i % 3 == 2) {
          if (response.body.find("fedfm_rounds_total ") != std::string::npos) ++consistent;
          continue;
        }
        nlohmann::json json = nlohmann::json::parse(response.body, nullptr, /*allow_exceptions=*/false);
        if (json.is_discarded()) continue;
        int64_t size = json.at("history_size");
        bool ok = size >= last_size && json.at("history").size() == static_cast<size_t>(size);
        for (int64_t r = 0; ok && r < size; ++r) ok = json.at("history")[r].at("round") == r + 1;
        last_size = size;
        if (ok) ++consistent;
      }
    });
  }
  writer.join();
  for (std::thread& reader : readers) reader.join();
  EXPECT_GE(total.load(), 60);
  EXPECT_EQ(consistent.load(), total.load());
  EXPECT_EQ(nlohmann::json::parse(Get(port, "/api/status").body).at("history_size"), 60);
}

}  // namespace
}  // namespace fedfm::coordinator
