// VirtualScheduler: conservative discrete-event scheduling of the sampled
// clients of one round, each on its own thread, against one coordinator on
// a virtual clock.
//
// Every client (an "actor") has a virtual time. Between coordinator calls it
// runs freely (training really happens then, in parallel with other actors),
// having first declared how much virtual time that takes (Advance), so its
// time is a lower bound of its next call. A call to the coordinator is
// granted only when no other actor could still act earlier: the caller's
// (time, id) is the smallest among actors not finished and not waiting for
// a change. The coordinator's clock is then set to the caller's time. So
// the coordinator sees messages in virtual-time order, one at a time, and a
// run replays exactly whatever the threads' real speeds (ties are broken by
// actor id).
//
// Deadlines: when the coordinator has a deadline pending (Probe::DeadlineMs)
// and no actor can act before it, the driver thread (Drive) sets the clock
// to the deadline and calls Probe::Tick.
//
// Long polls: an actor whose fetch found nothing ready calls AwaitChange and
// sleeps until the coordinator's state changes (Probe::Epoch differs after a
// call or a Tick); it then holds the coordinator again at the instant of
// the change.
//
// Times are microseconds; the coordinator's clock (milliseconds) is set to
// floor(t / 1000), so a message at t >= deadline_ms * 1000 is late.
#ifndef FEDFM_SIMULATION_INTERNAL_VIRTUAL_SCHEDULER_H_
#define FEDFM_SIMULATION_INTERNAL_VIRTUAL_SCHEDULER_H_

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "coordinator/clock.h"

namespace fedfm::simulation::internal {

class VirtualScheduler {
 public:
  // What the scheduler needs of the coordinator. Called with the
  // coordinator held (never concurrently with an actor's call).
  class Probe {
   public:
    virtual ~Probe() = default;
    // Changes whenever the coordinator's state changes in a way a waiting
    // fetch may care about (round, attempt, phase).
    virtual uint64_t Epoch() = 0;
    // When the coordinator next acts on a deadline (clock milliseconds); 0: none.
    virtual int64_t DeadlineMs() = 0;
    // Acts on the deadlines due at the clock's current time.
    virtual absl::Status Tick() = 0;
  };

  // `clock` and `probe` must outlive the scheduler.
  VirtualScheduler(coordinator::ManualClock& clock, Probe& probe);
  ~VirtualScheduler();
  VirtualScheduler(const VirtualScheduler&) = delete;
  VirtualScheduler& operator=(const VirtualScheduler&) = delete;

  // Adds an actor at virtual time `t_us` (not before the clock). Returns
  // its id (ids break ties). Call before the actors' threads start.
  int Add(int64_t t_us);

  // --- From the actor's own thread --------------------------------------------

  int64_t Now(int id);
  // The actor's time moves forward by `delta_us` (>= 0) before its next call.
  void Advance(int id, int64_t delta_us);
  // Blocks until the actor may call the coordinator; returns holding it,
  // with the clock at the actor's time. False when the scheduler was
  // stopped (then the actor must finish without calling).
  bool Acquire(int id);
  // Ends the actor's call.
  void Release(int id);
  // From a held call whose answer was "not ready": lets go of the
  // coordinator and sleeps until its state changes; returns holding it
  // again, at the instant of the change. False when stopped.
  bool AwaitChange(int id);
  // The actor will not call again (holding or not).
  void Finish(int id);

  // --- From the driver thread -------------------------------------------------

  // Serves deadlines until every actor has finished. FailedPrecondition
  // when actors wait for a change that nothing can bring (no deadline
  // pending): the scheduler is then stopped and its actors released; the
  // caller must still join their threads. A Tick error stops it likewise.
  absl::Status Drive();
  // Releases every waiting actor with false. Thread-safe.
  void Stop();

  // Virtual time of the latest event (call or tick), microseconds.
  int64_t last_event_us();

 private:
  enum class State { kRunning, kWaiting, kHolding, kBlocked, kFinished };
  struct Actor {
    State state = State::kRunning;
    int64_t t_us = 0;
    uint64_t epoch_seen = 0;
    bool granted = false;
    std::condition_variable cv;
  };

  // Under mu_: grants the coordinator to the next actor, or wakes the
  // driver for a deadline; no-op while someone holds it.
  void DispatchLocked();
  // Under mu_, with the coordinator held: re-reads the probe and wakes
  // blocked actors when the epoch moved.
  void RefreshLocked(int64_t event_us);

  coordinator::ManualClock& clock_;
  Probe& probe_;
  std::mutex mu_;
  std::condition_variable driver_cv_;
  std::vector<std::unique_ptr<Actor>> actors_;
  bool holding_ = false;
  bool tick_due_ = false;
  bool stopped_ = false;
  uint64_t epoch_ = 0;
  int64_t deadline_us_ = 0;  // 0: none
  int64_t last_event_us_ = 0;
};

}  // namespace fedfm::simulation::internal

#endif  // FEDFM_SIMULATION_INTERNAL_VIRTUAL_SCHEDULER_H_
