#include "coordinator/internal/grpc_support.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace fedfm::coordinator::internal {
namespace {

TEST(GrpcSupportTest, RateLimiterRefillsAtItsRateAndCapsAtBurst) {
  RateLimiter limiter(/*rate_per_s=*/10, /*burst=*/3);
  int64_t retry = 0;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Allow("a", 1000)) << i;
  EXPECT_FALSE(limiter.Allow("a", 1000, &retry));
  EXPECT_EQ(retry, 100);                     // one token every 100 ms
  EXPECT_TRUE(limiter.Allow("b", 1000));      // buckets are per key
  EXPECT_FALSE(limiter.Allow("a", 1050));
  EXPECT_TRUE(limiter.Allow("a", 1100));
  EXPECT_FALSE(limiter.Allow("a", 1100));
  // A long quiet spell refills to the burst, not beyond.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Allow("a", 100'000)) << i;
  EXPECT_FALSE(limiter.Allow("a", 100'000));
  RateLimiter off(0, 0);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(off.Allow("a", 0));
}

TEST(GrpcSupportTest, AdmissionGateAdmitsInOrderAndHonoursWithdrawal) {
  AdmissionGate gate(2);
  std::vector<int> admitted;
  EXPECT_TRUE(gate.Enter(1, [] {}));
  EXPECT_TRUE(gate.Enter(2, [] {}));
  EXPECT_FALSE(gate.Enter(3, [&] { admitted.push_back(3); }));
  EXPECT_FALSE(gate.Enter(4, [&] { admitted.push_back(4); }));
  EXPECT_FALSE(gate.Enter(5, [&] { admitted.push_back(5); }));
  EXPECT_EQ(gate.waiting(), 3);
  EXPECT_TRUE(gate.Withdraw(4));
  EXPECT_FALSE(gate.Withdraw(4));
  gate.Leave();  // slot of 1 -> 3
  EXPECT_EQ(admitted, (std::vector<int>{3}));
  EXPECT_EQ(gate.active(), 2);
  EXPECT_FALSE(gate.Withdraw(3));  // already admitted
  gate.Leave();  // -> 5
  EXPECT_EQ(admitted, (std::vector<int>{3, 5}));
  gate.Leave();
  gate.Leave();
  EXPECT_EQ(gate.active(), 0);
  // Emptied, the gate admits a newcomer at once.
  EXPECT_TRUE(gate.Enter(6, [] {}));
}

TEST(GrpcSupportTest, WorkerPoolRunsEveryTaskBeforeItIsDestroyed) {
  std::atomic<int> sum{0};
  {
    WorkerPool pool(3);
    for (int i = 1; i <= 200; ++i) pool.Post([&sum, i] { sum += i; });
  }
  EXPECT_EQ(sum.load(), 200 * 201 / 2);
}

}  // namespace
}  // namespace fedfm::coordinator::internal
