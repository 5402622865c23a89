#include "simulation/internal/virtual_scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "protocols/check.h"

namespace fedfm::simulation::internal {

VirtualScheduler::VirtualScheduler(coordinator::ManualClock& clock, Probe& probe) : clock_(clock), probe_(probe) {
  epoch_ = probe_.Epoch();
  const int64_t dl = probe_.DeadlineMs();
  deadline_us_ = dl > 0 ? dl * 1000 : 0;
  last_event_us_ = clock_.NowMs() * 1000;
}

VirtualScheduler::~VirtualScheduler() = default;

int VirtualScheduler::Add(int64_t t_us) {
  std::lock_guard<std::mutex> lock(mu_);
  auto actor = std::make_unique<Actor>();
  actor->t_us = std::max(t_us, clock_.NowMs() * 1000);
  actors_.push_back(std::move(actor));
  return static_cast<int>(actors_.size()) - 1;
}

int64_t VirtualScheduler::Now(int id) {
  std::lock_guard<std::mutex> lock(mu_);
  return actors_.at(id)->t_us;
}

int64_t VirtualScheduler::last_event_us() {
  std::lock_guard<std::mutex> lock(mu_);
  return last_event_us_;
}

void VirtualScheduler::Advance(int id, int64_t delta_us) {
  std::lock_guard<std::mutex> lock(mu_);
  Actor& a = *actors_.at(id);
  a.t_us += std::max<int64_t>(0, delta_us);
  DispatchLocked();
}

bool VirtualScheduler::Acquire(int id) {
  std::unique_lock<std::mutex> lock(mu_);
  Actor& a = *actors_.at(id);
  FEDFM_CHECK(a.state == State::kRunning);
  if (stopped_) return false;
  a.state = State::kWaiting;
  DispatchLocked();
  a.cv.wait(lock, [&] { return a.granted || stopped_; });
  if (!a.granted) return false;
  a.granted = false;
  a.state = State::kHolding;
  clock_.SetMs(a.t_us / 1000);
  last_event_us_ = std::max(last_event_us_, a.t_us);
  return true;
}

void VirtualScheduler::Release(int id) {
  std::lock_guard<std::mutex> lock(mu_);
  Actor& a = *actors_.at(id);
  FEDFM_CHECK(a.state == State::kHolding);
  RefreshLocked(a.t_us);
  a.state = State::kRunning;
  holding_ = false;
  DispatchLocked();
}

bool VirtualScheduler::AwaitChange(int id) {
  std::unique_lock<std::mutex> lock(mu_);
  Actor& a = *actors_.at(id);
  FEDFM_CHECK(a.state == State::kHolding);
  RefreshLocked(a.t_us);
  a.epoch_seen = epoch_;
  a.state = State::kBlocked;
  holding_ = false;
  DispatchLocked();
  a.cv.wait(lock, [&] { return a.granted || stopped_; });
  if (!a.granted) {
    a.state = State::kRunning;
    return false;
  }
  a.granted = false;
  a.state = State::kHolding;
  clock_.SetMs(a.t_us / 1000);
  last_event_us_ = std::max(last_event_us_, a.t_us);
  return true;
}

void VirtualScheduler::Finish(int id) {
  std::lock_guard<std::mutex> lock(mu_);
  Actor& a = *actors_.at(id);
  if (a.state == State::kHolding) holding_ = false;
  a.state = State::kFinished;
  DispatchLocked();
  driver_cv_.notify_all();
}

void VirtualScheduler::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stopped_ = true;
  for (auto& a : actors_) a->cv.notify_all();
  driver_cv_.notify_all();
}

void VirtualScheduler::RefreshLocked(int64_t event_us) {
  const uint64_t epoch = probe_.Epoch();
  const int64_t dl = probe_.DeadlineMs();
  deadline_us_ = dl > 0 ? dl * 1000 : 0;
  if (epoch == epoch_) return;
  epoch_ = epoch;
  for (auto& a : actors_) {
    if (a->state != State::kBlocked) continue;
    a->state = State::kWaiting;
    a->t_us = std::max(a->t_us, event_us);
  }
}

void VirtualScheduler::DispatchLocked() {
  if (holding_ || stopped_) return;
  Actor* best = nullptr;
  for (auto& a : actors_) {
    if (a->state != State::kRunning && a->state != State::kWaiting) continue;
    if (best == nullptr || a->t_us < best->t_us) best = a.get();  // ties: the lower id, met first
  }
  const bool any_blocked = std::any_of(actors_.begin(), actors_.end(),
                                       [](const auto& a) { return a->state == State::kBlocked; });
  if (deadline_us_ > 0 && (best != nullptr ? best->t_us >= deadline_us_ : any_blocked)) {
    holding_ = true;
    tick_due_ = true;
    driver_cv_.notify_all();
    return;
  }
  if (best != nullptr && best->state == State::kWaiting) {
    holding_ = true;
    best->granted = true;
    best->cv.notify_one();
    return;
  }
  driver_cv_.notify_all();
}

absl::Status VirtualScheduler::Drive() {
  std::unique_lock<std::mutex> lock(mu_);
  auto all_finished = [&] {
    return std::all_of(actors_.begin(), actors_.end(), [](const auto& a) { return a->state == State::kFinished; });
  };
  auto stuck = [&] {
    if (holding_) return false;
    bool any_blocked = false;
    for (const auto& a : actors_) {
      if (a->state == State::kRunning || a->state == State::kWaiting || a->state == State::kHolding) return false;
      any_blocked |= a->state == State::kBlocked;
    }
    return any_blocked && deadline_us_ == 0;
  };
  DispatchLocked();
  while (true) {
    driver_cv_.wait(lock, [&] { return tick_due_ || stopped_ || all_finished() || stuck(); });
    if (tick_due_) {
      const int64_t d = deadline_us_;
      clock_.SetMs(d / 1000);
      last_event_us_ = std::max(last_event_us_, d);
      lock.unlock();
      const absl::Status ticked = probe_.Tick();
      lock.lock();
      tick_due_ = false;
      if (!ticked.ok()) {
        holding_ = false;
        stopped_ = true;
        for (auto& a : actors_) a->cv.notify_all();
        return ticked;
      }
      RefreshLocked(d);
      // A deadline the tick did not move would be served forever: try again
      // a millisecond later.
      if (deadline_us_ != 0 && deadline_us_ <= d) deadline_us_ = d + 1000;
      holding_ = false;
      DispatchLocked();
      continue;
    }
    if (all_finished()) return absl::OkStatus();
    if (stopped_) return absl::CancelledError("the virtual scheduler was stopped");
    stopped_ = true;
    for (auto& a : actors_) a->cv.notify_all();
    return absl::FailedPreconditionError(
        absl::StrCat("virtual time is stuck at ", last_event_us_, " us: every client waits for the coordinator, which "
                     "has no deadline pending"));
  }
}

}  // namespace fedfm::simulation::internal
