// Renders the dashboard page in headless Chromium and checks, from the DOM
// after the page's scripts ran, that each chart plotted every round. Skipped
// when Chromium is not installed.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/dashboard.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedfm::coordinator {
namespace {

using protocols::Method;

std::string FindChromium() {
  for (const char* path : {"/usr/bin/chromium", "/usr/bin/chromium-browser"}) {
    if (::access(path, X_OK) == 0) return path;
  }
  return "";
}

// A fresh directory, removed with the object.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "fedfm-chromium-XXXXXX").string();
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs `command` through the shell; its stdout, and its exit status in `status`.
std::string RunCommand(const std::string& command, int* status) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) {
    *status = -1;
    return out;
  }
  char buf[8192];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  *status = ::pclose(pipe);
  return out;
}

// The opening tag of the element with id `id` in `dom`, or "".
std::string OpeningTag(const std::string& dom, const std::string& id) {
  std::size_t at = dom.find("id=\"" + id + "\"");
  if (at == std::string::npos) return "";
  std::size_t begin = dom.rfind('<', at);
  std::size_t end = dom.find('>', at);
  return dom.substr(begin, end - begin + 1);
}

// The value of attribute `name` in an opening tag, or "<absent>".
std::string Attribute(const std::string& tag, const std::string& name) {
  std::size_t at = tag.find(" " + name + "=\"");
  if (at == std::string::npos) return "<absent>";
  at += name.size() + 3;
  return tag.substr(at, tag.find('"', at) - at);
}

DashboardStatus TestStatus(int64_t round) {
  DashboardStatus status;
  status.run_id = "run-browser";
  status.run_name = "browser test run";
  status.round = round;
  status.total_rounds = 12;
  status.phase = "train";
  status.clients_connected = 5;
  status.clients_enrolled = 9;
  status.model_version = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
  return status;
}

// Adds rounds first..last to `source` with values from `rng`; returns how
// many values the page plots for them: per round, 3 metrics (train, eval,
// accuracy), 2 per method present in the bytes chart (up, down; all
// positive), one per method seen in any round in the participants chart (0
// when absent; every test run has all three), 1 duration.
int AddRounds(InMemoryDashboardSource& source, int first, int last, std::mt19937& rng) {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::uniform_int_distribution<int64_t> bytes(10'000, 9'000'000);
  int points = 0;
  for (int r = first; r <= last; ++r) {
    RoundSummary round;
    round.round = r;
    round.metrics[kMetricTrainLoss] = 3.5 - 0.2 * r + 0.1 * unit(rng);
    round.metrics[kMetricEvalLoss] = 3.7 - 0.2 * r + 0.1 * unit(rng);
    round.metrics[kMetricEvalAccuracy] = 0.3 + 0.05 * r;
    round.methods[Method::kLora] = {4, bytes(rng), bytes(rng)};
    round.methods[Method::kZerothOrder] = {3 + r % 2, 800 + r, bytes(rng)};
    if (r % 2 == 1) round.methods[Method::kPartial] = {2, bytes(rng), bytes(rng)};
    round.duration_s = 2 + 3 * unit(rng);
    round.wall_time_s = 5.0 * r;
    round.virtual_time_s = 5.0 * r;
    source.AddRound(round);
    points += 3 + 2 * static_cast<int>(round.methods.size()) + 3 + 1;
  }
  return points;
}

// Loads the dashboard on `port` in headless Chromium, lets its scripts run
// for 5 s of virtual time (two polls or more) and returns the DOM.
std::string RenderDom(const std::string& chromium, int port) {
  TempDir profile;
  EXPECT_FALSE(profile.path().empty());
  std::string command = absl::StrCat(
      "timeout 60 ", chromium,
      " --headless --no-sandbox --disable-gpu --disable-quic --no-first-run"
      " --disable-background-networking --disable-component-update --disable-sync"
      " --disable-dev-shm-usage --user-data-dir=",
      profile.path(), " --virtual-time-budget=5000 --dump-dom http://127.0.0.1:", port, "/ 2>/dev/null");
  int exit_status = 0;
  std::string dom = RunCommand(command, &exit_status);
  EXPECT_TRUE(WIFEXITED(exit_status) && WEXITSTATUS(exit_status) == 0)
      << "chromium failed (status " << exit_status << "): " << command;
  return dom;
}

// Every chart plotted `rounds` rows and drew a canvas; the body counts
// `points` values.
void ExpectChartsRendered(const std::string& dom, int rounds, int points) {
  ASSERT_FALSE(OpeningTag(dom, "status-line").empty()) << dom.substr(0, 2000);
  std::size_t body_at = dom.find("<body");
  ASSERT_NE(body_at, std::string::npos);
  std::string body_tag = dom.substr(body_at, dom.find('>', body_at) - body_at + 1);
  EXPECT_EQ(Attribute(body_tag, "data-rounds"), absl::StrCat(rounds)) << body_tag;
  EXPECT_EQ(Attribute(body_tag, "data-points"), absl::StrCat(points)) << body_tag;

  const std::vector<std::string> charts = {"chart-metrics", "chart-bytes", "chart-participants", "chart-duration"};
  for (std::size_t i = 0; i < charts.size(); ++i) {
    std::string tag = OpeningTag(dom, charts[i]);
    ASSERT_FALSE(tag.empty()) << charts[i];
    EXPECT_EQ(Attribute(tag, "data-rows"), absl::StrCat(rounds)) << charts[i] << ": " << tag;
    // A canvas between this chart's div and the next one's.
    std::size_t begin = dom.find(tag);
    std::size_t end = i + 1 < charts.size() ? dom.find(OpeningTag(dom, charts[i + 1])) : dom.size();
    EXPECT_NE(dom.substr(begin, end - begin).find("<canvas"), std::string::npos) << charts[i];
  }
  // No poll failed ("error" class), and the status tiles were filled.
  EXPECT_EQ(Attribute(OpeningTag(dom, "status-line"), "class"), "<absent>");
  EXPECT_THAT(dom, ::testing::HasSubstr(">live · train"));
  EXPECT_THAT(dom, ::testing::HasSubstr(">browser test run<"));
  EXPECT_THAT(dom, ::testing::HasSubstr(">5 / 9<"));
  EXPECT_THAT(dom, ::testing::HasSubstr(">9f86d081884c<"));
}

TEST(DashboardBrowserTest, ChartsRenderEveryRound) {
  std::string chromium = FindChromium();
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed";
  constexpr int kRounds = 7;
  InMemoryDashboardSource source;
  source.SetStatus(TestStatus(kRounds + 1));
  std::mt19937 rng(2024);
  int points = AddRounds(source, 1, kRounds, rng);
  absl::StatusOr<std::unique_ptr<HttpServer>> server = StartDashboard("127.0.0.1:0", &source);
  ASSERT_TRUE(server.ok()) << server.status();

  std::string dom = RenderDom(chromium, (*server)->port());
  ExpectChartsRendered(dom, kRounds, points);
  EXPECT_THAT(dom, ::testing::HasSubstr(">8 / 12<"));
}

// Rounds that arrive between polls are appended (the page asks for
// ?since=<last round> after its first poll).
class GrowingSource final : public DashboardSource {
 public:
  absl::StatusOr<DashboardSnapshot> Snapshot(int64_t after_round) override {
    std::lock_guard<std::mutex> lock(mu_);
    after_rounds_.push_back(after_round);
    if (after_rounds_.size() == 2) {  // the first incremental poll
      points_ += AddRounds(inner_, 4, 9, rng_);
      inner_.SetStatus(TestStatus(10));
    }
    return inner_.Snapshot(after_round);
  }

  void Start() {
    std::lock_guard<std::mutex> lock(mu_);
    inner_.SetStatus(TestStatus(4));
    points_ = AddRounds(inner_, 1, 3, rng_);
  }
  std::vector<int64_t> after_rounds() {
    std::lock_guard<std::mutex> lock(mu_);
    return after_rounds_;
  }
  int points() {
    std::lock_guard<std::mutex> lock(mu_);
    return points_;
  }

 private:
  std::mutex mu_;
  InMemoryDashboardSource inner_;
  std::mt19937 rng_{99};
  std::vector<int64_t> after_rounds_;
  int points_ = 0;
};

TEST(DashboardBrowserTest, ChartsFollowNewRounds) {
  std::string chromium = FindChromium();
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed";
  GrowingSource source;
  source.Start();
  absl::StatusOr<std::unique_ptr<HttpServer>> server = StartDashboard("127.0.0.1:0", &source);
  ASSERT_TRUE(server.ok()) << server.status();

  std::string dom = RenderDom(chromium, (*server)->port());
  std::vector<int64_t> polls = source.after_rounds();
  ASSERT_GE(polls.size(), 2u) << "the page polled fewer than two times";
  EXPECT_EQ(polls[0], -1);  // everything
  EXPECT_EQ(polls[1], 3);   // only what came after round 3
  // No resynchronisation (a full poll after the first) was needed.
  EXPECT_EQ(std::count(polls.begin(), polls.end(), -1), 1);
  ExpectChartsRendered(dom, 9, source.points());
  EXPECT_THAT(dom, ::testing::HasSubstr(">10 / 12<"));
}

}  // namespace
}  // namespace fedfm::coordinator
