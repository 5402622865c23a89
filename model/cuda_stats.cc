// CUDA allocator statistics, compiled with FEDFM_TORCH_CUDA=1 only when the
// linked LibTorch has CUDA (model/CMakeLists.txt decides).
#include "model/internal/device_stats.h"

#if FEDFM_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace fedfm::model::internal {

#if FEDFM_TORCH_CUDA
void ResetCudaPeakMemory(int index) {
  c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(index));
}

// Entry 0 of the stat arrays is StatType::AGGREGATE (all pools) in every
// LibTorch version; the enum's namespace moved between versions, its value did not.
int64_t CudaAllocatedBytes(int index) {
  return c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(index)).allocated_bytes[0].current;
}

int64_t CudaPeakAllocatedBytes(int index) {
  return c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(index)).allocated_bytes[0].peak;
}
#else
void ResetCudaPeakMemory(int) {}
int64_t CudaAllocatedBytes(int) { return -1; }
int64_t CudaPeakAllocatedBytes(int) { return -1; }
#endif

}  // namespace fedfm::model::internal
