#include "simulation/internal/virtual_scheduler.h"

#include <chrono>
#include <mutex>
#include <random>
#include <thread>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"

namespace fedfm::simulation::internal {
namespace {

// A coordinator stand-in: `epoch` bumps when a call says so, one deadline
// that a Tick consumes (and bumps the epoch).
class FakeProbe final : public VirtualScheduler::Probe {
 public:
  uint64_t Epoch() override { return epoch; }
  int64_t DeadlineMs() override { return deadline_ms; }
  absl::Status Tick() override {
    ticks.push_back(clock->NowMs());
    if (deadline_ms > 0 && clock->NowMs() >= deadline_ms) {
      deadline_ms = 0;
      ++epoch;
    }
    return absl::OkStatus();
  }
  coordinator::ManualClock* clock = nullptr;
  uint64_t epoch = 0;
  int64_t deadline_ms = 0;
  std::vector<int64_t> ticks;
};

struct Event {
  int actor;
  int64_t t_us;
  int64_t clock_ms;
};

// Three actors with different speeds and real-time sleeps in between: the
// coordinator sees their calls in virtual-time order (ties by id), every
// time, and its clock follows.
TEST(VirtualClockTest, CallsArriveInVirtualTimeOrder) {
  for (int trial = 0; trial < 3; ++trial) {
    coordinator::ManualClock clock(1'000'000);
    FakeProbe probe;
    probe.clock = &clock;
    VirtualScheduler sched(clock, probe);
    const std::vector<int64_t> step_us = {7'000, 3'000, 5'000};
    std::vector<int> ids;
    for (size_t i = 0; i < step_us.size(); ++i) ids.push_back(sched.Add(1'000'000'000));
    std::mutex mu;
    std::vector<Event> events;
    std::vector<std::thread> threads;
    for (size_t i = 0; i < step_us.size(); ++i) {
      threads.emplace_back([&, i] {
        std::mt19937 rng(static_cast<unsigned>(trial * 10 + i));
        for (int k = 0; k < 6; ++k) {
          sched.Advance(ids[i], step_us[i]);
          std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));  // real work of random length
          ASSERT_TRUE(sched.Acquire(ids[i]));
          {
            std::lock_guard<std::mutex> lock(mu);
            events.push_back({ids[i], sched.Now(ids[i]), clock.NowMs()});
          }
          sched.Release(ids[i]);
        }
        sched.Finish(ids[i]);
      });
    }
    ASSERT_TRUE(sched.Drive().ok());
    for (std::thread& t : threads) t.join();
    ASSERT_EQ(events.size(), 18u);
    for (size_t k = 1; k < events.size(); ++k) {
      EXPECT_LE(std::tie(events[k - 1].t_us, events[k - 1].actor), std::tie(events[k].t_us, events[k].actor))
          << "event " << k << " of trial " << trial;
    }
    for (const Event& e : events) EXPECT_EQ(e.clock_ms, e.t_us / 1000);
    // Actor 1 (3 ms steps) has made all six calls before actor 0 (7 ms) makes its third.
    EXPECT_EQ(events[0].actor, ids[1]);
    EXPECT_EQ(events.back().actor, ids[0]);
  }
}

// An actor waiting for a change that no other actor brings wakes at the
// coordinator's deadline, after the driver's Tick.
TEST(VirtualClockTest, DeadlineWakesWaitingActors) {
  coordinator::ManualClock clock(1'000);
  FakeProbe probe;
  probe.clock = &clock;
  probe.deadline_ms = 1'250;
  VirtualScheduler sched(clock, probe);
  const int a = sched.Add(1'000'000);
  const int b = sched.Add(1'000'000);
  int64_t woke_us = -1, b_call_ms = -1;
  std::thread ta([&] {
    ASSERT_TRUE(sched.Acquire(a));
    ASSERT_TRUE(sched.AwaitChange(a));  // nothing ready: sleep until the state changes
    woke_us = sched.Now(a);
    sched.Release(a);
    sched.Finish(a);
  });
  std::thread tb([&] {
    sched.Advance(b, 400'000);  // b's next call would be at 1,400 ms: after the deadline
    ASSERT_TRUE(sched.Acquire(b));
    b_call_ms = clock.NowMs();
    sched.Release(b);
    sched.Finish(b);
  });
  ASSERT_TRUE(sched.Drive().ok());
  ta.join();
  tb.join();
  EXPECT_EQ(probe.ticks, std::vector<int64_t>{1'250});
  EXPECT_EQ(woke_us, 1'250'000);
  EXPECT_EQ(b_call_ms, 1'400);
}

TEST(VirtualClockTest, WaitingWithNothingPendingIsReportedNotHung) {
  coordinator::ManualClock clock(1'000);
  FakeProbe probe;
  probe.clock = &clock;
  VirtualScheduler sched(clock, probe);
  const int a = sched.Add(1'000'000);
  bool woke = true;
  std::thread ta([&] {
    ASSERT_TRUE(sched.Acquire(a));
    woke = sched.AwaitChange(a);
    sched.Finish(a);
  });
  const absl::Status s = sched.Drive();
  ta.join();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_FALSE(woke);
}

}  // namespace
}  // namespace fedfm::simulation::internal
