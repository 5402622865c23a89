// Memory statistics of the device a benchmark runs on. CUDA numbers come
// from LibTorch's caching allocator in builds linked against a CUDA LibTorch
// (cuda_stats.cc, the one file that includes c10/cuda); elsewhere they are -1.
#ifndef FEDFM_MODEL_INTERNAL_DEVICE_STATS_H_
#define FEDFM_MODEL_INTERNAL_DEVICE_STATS_H_

#include <cstdint>

namespace fedfm::model::internal {

// Resets the peak counter of CUDA device `index` (no-op without CUDA).
void ResetCudaPeakMemory(int index);
// Bytes allocated on CUDA device `index` now, and at the peak since the last
// reset; -1 without CUDA.
int64_t CudaAllocatedBytes(int index);
int64_t CudaPeakAllocatedBytes(int index);

// Returns freed heap memory to the kernel (glibc malloc_trim), so that the
// resident set size counts live memory only; no-op on other C libraries.
void ReleaseFreedHostMemory();
// Resets the process's peak resident set size (Linux /proc/self/clear_refs);
// false when the kernel refused.
bool ResetPeakRss();
// Current and peak resident set size in bytes (/proc/self/status); -1 when unknown.
int64_t CurrentRssBytes();
int64_t PeakRssBytes();

}  // namespace fedfm::model::internal

#endif  // FEDFM_MODEL_INTERNAL_DEVICE_STATS_H_
