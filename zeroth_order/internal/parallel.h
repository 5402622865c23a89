// Splitting element ranges over std::threads for the torch-free core. The
// zeroth-order computations are elementwise pure functions, so any split
// gives the same bits; this only decides how many threads share the work.
#ifndef FEDFM_ZEROTH_ORDER_INTERNAL_PARALLEL_H_
#define FEDFM_ZEROTH_ORDER_INTERNAL_PARALLEL_H_

#include <cstddef>
#include <functional>

namespace fedfm::zeroth_order::internal {

// Below this many elements per thread, threads cost more than they save.
inline constexpr size_t kMinElementsPerThread = size_t{1} << 15;

// Runs fn(begin, end) over [0, n) split into at most num_threads contiguous
// ranges, the first on the calling thread; returns when all are done.
// num_threads < 1 counts as 1. fn must be safe to run concurrently on
// disjoint ranges.
void RunRanges(size_t n, int num_threads, const std::function<void(size_t, size_t)>& fn);

}  // namespace fedfm::zeroth_order::internal

#endif  // FEDFM_ZEROTH_ORDER_INTERNAL_PARALLEL_H_
