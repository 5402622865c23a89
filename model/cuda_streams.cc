#include "model/cuda_streams.h"

#if FEDFM_TORCH_CUDA
#include <map>
#include <mutex>
#include <utility>

#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace fedfm::model {

#if FEDFM_TORCH_CUDA
namespace {

c10::cuda::CUDAStream SlotStream(int device_index, int slot) {
  static std::mutex mu;
  static std::map<std::pair<int, int>, c10::cuda::CUDAStream> streams;
  std::lock_guard<std::mutex> lock(mu);
  const std::pair<int, int> key{device_index, slot};
  auto it = streams.find(key);
  if (it == streams.end()) {
    it = streams.emplace(key, c10::cuda::getStreamFromPool(/*isHighPriority=*/false,
                                                            static_cast<c10::DeviceIndex>(device_index)))
             .first;
  }
  return it->second;
}

}  // namespace

struct CudaStreamScope::Impl {
  explicit Impl(c10::cuda::CUDAStream s) : stream(s), guard(s) {}
  c10::cuda::CUDAStream stream;
  c10::cuda::CUDAStreamGuard guard;
};

CudaStreamScope::CudaStreamScope(int device_index, int slot)
    : impl_(std::make_unique<Impl>(SlotStream(device_index, slot))) {}

CudaStreamScope::~CudaStreamScope() { impl_->stream.synchronize(); }

int CudaDeviceCount() { return static_cast<int>(c10::cuda::device_count()); }

void SynchronizeCudaDevice(int device_index) {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_index));
  c10::cuda::device_synchronize();
}
#else
struct CudaStreamScope::Impl {};
CudaStreamScope::CudaStreamScope(int, int) {}
CudaStreamScope::~CudaStreamScope() = default;
int CudaDeviceCount() { return 0; }
void SynchronizeCudaDevice(int) {}
#endif

}  // namespace fedfm::model
