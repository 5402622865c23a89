// Time as the coordinator sees it: an injected Clock, as leveldb code gets an
// Env. The gRPC service runs on SystemClock; tests and the simulation use a
// ManualClock they advance themselves, so deadlines, stragglers and backoff
// are exercised without sleeping.
//
// Thread safety: every implementation here is safe to call from any thread.
#ifndef FEDFM_COORDINATOR_CLOCK_H_
#define FEDFM_COORDINATOR_CLOCK_H_

#include <atomic>
#include <chrono>
#include <cstdint>

namespace fedfm::coordinator {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch (or since any fixed origin, for a
  // ManualClock). Never decreases.
  virtual int64_t NowMs() = 0;
};

// The system's wall clock (std::chrono::system_clock), made monotonic: a
// step backwards of the system time holds the returned value still instead
// of going back.
class SystemClock final : public Clock {
 public:
  int64_t NowMs() override {
    const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    int64_t last = last_.load(std::memory_order_relaxed);
    while (now > last && !last_.compare_exchange_weak(last, now, std::memory_order_relaxed)) {
    }
    return now > last ? now : last;
  }

 private:
  std::atomic<int64_t> last_{0};
};

// A clock that moves only when told to.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_ms = 1'700'000'000'000) : now_ms_(start_ms) {}

  int64_t NowMs() override { return now_ms_.load(std::memory_order_acquire); }
  // Moves the clock forward by `delta_ms` (>= 0; a negative value is ignored).
  void AdvanceMs(int64_t delta_ms) {
    if (delta_ms > 0) now_ms_.fetch_add(delta_ms, std::memory_order_acq_rel);
  }
  // Moves the clock to `now_ms` if that is later than the current time.
  void SetMs(int64_t now_ms) {
    int64_t cur = now_ms_.load(std::memory_order_acquire);
    while (now_ms > cur && !now_ms_.compare_exchange_weak(cur, now_ms, std::memory_order_acq_rel)) {
    }
  }

 private:
  std::atomic<int64_t> now_ms_;
};

}  // namespace fedfm::coordinator

#endif  // FEDFM_COORDINATOR_CLOCK_H_
