// A manual-viewing demo of the dashboard: serves a synthetic run whose rounds
// advance on a timer, until Ctrl-C. Not part of the fedfm binary.
//
//   coordinator_dashboard_demo [ADDRESS] [PREFILL_ROUNDS] [ROUND_INTERVAL_MS]
//   coordinator_dashboard_demo 127.0.0.1:8080 30 1000
#include <atomic>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <thread>

#include "coordinator/dashboard.h"

namespace {

using fedfm::coordinator::DashboardStatus;
using fedfm::coordinator::InMemoryDashboardSource;
using fedfm::coordinator::RoundSummary;
using fedfm::protocols::Method;

constexpr int kTotalRounds = 200;
constexpr const char* kPhases[] = {"select", "configure", "train", "secagg", "aggregate", "commit"};

RoundSummary MakeRound(int r, std::mt19937& rng, double& clock_s) {
  std::normal_distribution<double> noise(0.0, 1.0);
  RoundSummary round;
  round.round = r;
  double progress = 1.0 - std::exp(-r / 25.0);
  round.metrics[fedfm::coordinator::kMetricTrainLoss] = 5.5 - 3.2 * progress + 0.08 * noise(rng);
  if (r % 2 == 0) {
    round.metrics[fedfm::coordinator::kMetricEvalLoss] = 5.6 - 3.0 * progress + 0.05 * noise(rng);
    round.metrics[fedfm::coordinator::kMetricEvalAccuracy] = 0.08 + 0.5 * progress + 0.01 * noise(rng);
  }
  auto count = [&](double mean) { return std::max<int64_t>(0, std::llround(mean + 1.2 * noise(rng))); };
  int64_t lora = count(5), partial = count(2), zo = count(10);
  if (lora > 0) round.methods[Method::kLora] = {lora, lora * 2'300'000, lora * 2'400'000};
  if (partial > 0) round.methods[Method::kPartial] = {partial, partial * 9'100'000, partial * 9'300'000};
  if (zo > 0) round.methods[Method::kZerothOrder] = {zo, zo * 388, zo * 2'400'000};
  round.duration_s = 20.0 + 4.0 * std::abs(noise(rng)) + (partial > 2 ? 6.0 : 0.0);
  clock_s += round.duration_s;
  round.wall_time_s = clock_s;
  round.virtual_time_s = clock_s;
  return round;
}

}  // namespace

int main(int argc, char** argv) {
  std::string address = argc > 1 ? argv[1] : "127.0.0.1:8080";
  int prefill = argc > 2 ? std::atoi(argv[2]) : 30;
  int interval_ms = argc > 3 ? std::atoi(argv[3]) : 1000;

  // Signals are taken by sigwait below, on this thread only.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  InMemoryDashboardSource source;
  DashboardStatus status;
  status.run_id = "run-demo-0001";
  status.run_name = "tinystories · LoRA + partial + zeroth-order";
  status.total_rounds = kTotalRounds;
  status.clients_enrolled = 24;
  status.clients_connected = 19;
  source.SetStatus(status);
  std::mt19937 rng(20240611);
  double clock_s = 0;
  int r = 1;
  for (; r <= prefill; ++r) source.AddRound(MakeRound(r, rng, clock_s));
  auto set_progress = [&source](int round, const char* phase) {
    source.UpdateStatus([&](DashboardStatus& s) {
      s.round = round;
      s.phase = phase;
      s.model_version = std::string("4f0c9a1be2d37c58") + std::to_string(round);
      s.participants = {{Method::kLora, 5}, {Method::kPartial, 2}, {Method::kZerothOrder, 10}};
    });
  };
  set_progress(r, "train");

  auto server = fedfm::coordinator::StartDashboard(address, &source);
  if (!server.ok()) {
    std::fprintf(stderr, "dashboard demo: %s\n", server.status().ToString().c_str());
    return 1;
  }
  std::printf("dashboard on http://%s/ (Ctrl-C stops)\n", (*server)->address().c_str());
  std::fflush(stdout);

  std::atomic<bool> stop{false};
  std::thread rounds([&] {
    for (int phase = 0; r <= kTotalRounds && !stop; ++phase) {
      timespec wait{interval_ms / 1000 / 6, (interval_ms / 6 % 1000) * 1'000'000L};
      nanosleep(&wait, nullptr);
      if (phase % 6 == 5) source.AddRound(MakeRound(r++, rng, clock_s));
      set_progress(r, kPhases[phase % 6]);
    }
  });

  int signal = 0;
  sigwait(&signals, &signal);
  (*server)->Stop();
  stop = true;
  rounds.join();
  std::printf("stopped\n");
  return 0;
}
