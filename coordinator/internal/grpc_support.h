// Transport-free pieces of the coordinator's gRPC service
// (coordinator/grpc_service.h): the worker pool that runs engine calls off
// gRPC's event threads, per-client token-bucket rate limits, and the gate
// that bounds how many streams are served at once (uploads are decoded in
// memory while they arrive, so this is what keeps the coordinator's memory
// O(model) however many clients upload together).
//
// Thread safety: every class here is safe to use from any thread.
#ifndef FEDFM_COORDINATOR_INTERNAL_GRPC_SUPPORT_H_
#define FEDFM_COORDINATOR_INTERNAL_GRPC_SUPPORT_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace fedfm::coordinator::internal {

// A fixed set of threads running posted tasks in FIFO order. The destructor
// runs every task already posted, then joins.
class WorkerPool {
 public:
  explicit WorkerPool(int threads);  // threads >= 1
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void Post(std::function<void()> task);

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// Token buckets, one per key (client id): `rate_per_s` tokens a second, at
// most `burst` saved up; a bucket starts full. rate_per_s <= 0: no limit.
class RateLimiter {
 public:
  RateLimiter(double rate_per_s, double burst);

  // Takes one token from `key`'s bucket at time `now_ms` (any monotonic
  // milliseconds). False when the bucket is empty; then *retry_after_ms
  // (when not null) says when the next token arrives.
  bool Allow(const std::string& key, int64_t now_ms, int64_t* retry_after_ms = nullptr);

 private:
  struct Bucket {
    double tokens = 0;
    int64_t last_ms = 0;
  };
  const double rate_per_s_;
  const double burst_;
  std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
};

// At most `capacity` holders at once; the others wait in FIFO order.
class AdmissionGate {
 public:
  explicit AdmissionGate(int capacity);  // capacity >= 1

  // Enters at once (true), or queues `on_admit` under `ticket` (false):
  // it is called, from the thread whose Leave() freed the slot, once the
  // waiter holds a slot. Tickets must be unique among waiters.
  bool Enter(uint64_t ticket, std::function<void()> on_admit);
  // Withdraws a queued waiter. True when it was still queued (its on_admit
  // will never run and it holds no slot); false when it was admitted already.
  bool Withdraw(uint64_t ticket);
  // Releases a slot held by the caller: passes it to the first waiter, if any.
  void Leave();

  int active();
  int waiting();

 private:
  const int capacity_;
  std::mutex mu_;
  int active_ = 0;
  std::deque<std::pair<uint64_t, std::function<void()>>> waiting_;
};

}  // namespace fedfm::coordinator::internal

#endif  // FEDFM_COORDINATOR_INTERNAL_GRPC_SUPPORT_H_
