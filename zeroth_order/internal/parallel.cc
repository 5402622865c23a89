#include "zeroth_order/internal/parallel.h"

#include <algorithm>
#include <thread>
#include <vector>

namespace fedfm::zeroth_order::internal {

void RunRanges(size_t n, int num_threads, const std::function<void(size_t, size_t)>& fn) {
  size_t threads = num_threads < 1 ? 1 : static_cast<size_t>(num_threads);
  threads = std::min(threads, std::max<size_t>(1, n / kMinElementsPerThread));
  if (threads <= 1) {
    fn(0, n);
    return;
  }
  const size_t per = (n + threads - 1) / threads;
  std::vector<std::thread> workers;
  workers.reserve(threads - 1);
  for (size_t t = 1; t < threads; ++t) {
    const size_t begin = std::min(n, t * per), end = std::min(n, begin + per);
    workers.emplace_back([&fn, begin, end] { fn(begin, end); });
  }
  fn(0, std::min(n, per));
  for (std::thread& w : workers) w.join();
}

}  // namespace fedfm::zeroth_order::internal
