#include "coordinator/internal/grpc_support.h"

#include <algorithm>
#include <cmath>

#include "protocols/check.h"

namespace fedfm::coordinator::internal {

WorkerPool::WorkerPool(int threads) {
  FEDFM_CHECK(threads >= 1);
  threads_.reserve(threads);
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void WorkerPool::Post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void WorkerPool::Loop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping, and everything posted has run
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

RateLimiter::RateLimiter(double rate_per_s, double burst) : rate_per_s_(rate_per_s), burst_(std::max(1.0, burst)) {}

bool RateLimiter::Allow(const std::string& key, int64_t now_ms, int64_t* retry_after_ms) {
  if (rate_per_s_ <= 0) return true;
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = buckets_.try_emplace(key);
  Bucket& b = it->second;
  if (inserted) {
    b.tokens = burst_;
  } else if (now_ms > b.last_ms) {
    b.tokens = std::min(burst_, b.tokens + (now_ms - b.last_ms) * rate_per_s_ / 1000.0);
  }
  b.last_ms = std::max(b.last_ms, now_ms);
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return true;
  }
  if (retry_after_ms != nullptr) {
    *retry_after_ms = static_cast<int64_t>(std::ceil((1.0 - b.tokens) * 1000.0 / rate_per_s_));
  }
  return false;
}

AdmissionGate::AdmissionGate(int capacity) : capacity_(capacity) { FEDFM_CHECK(capacity >= 1); }

bool AdmissionGate::Enter(uint64_t ticket, std::function<void()> on_admit) {
  std::lock_guard<std::mutex> lock(mu_);
  if (active_ < capacity_ && waiting_.empty()) {
    ++active_;
    return true;
  }
  waiting_.emplace_back(ticket, std::move(on_admit));
  return false;
}

bool AdmissionGate::Withdraw(uint64_t ticket) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(waiting_.begin(), waiting_.end(), [&](const auto& w) { return w.first == ticket; });
  if (it == waiting_.end()) return false;
  waiting_.erase(it);
  return true;
}

void AdmissionGate::Leave() {
  std::function<void()> next;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (waiting_.empty()) {
      FEDFM_CHECK(active_ > 0);
      --active_;
      return;
    }
    next = std::move(waiting_.front().second);  // the slot passes on; active_ stays
    waiting_.pop_front();
  }
  next();
}

int AdmissionGate::active() {
  std::lock_guard<std::mutex> lock(mu_);
  return active_;
}

int AdmissionGate::waiting() {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(waiting_.size());
}

}  // namespace fedfm::coordinator::internal
