// CUDA streams for threads that share one model: each worker slot of a
// simulation trains on a stream of its own, so that clients training at once
// overlap on the GPU instead of queueing on the default stream. Torch-free
// header; cuda_streams.cc is compiled with CUDA support only where the linked
// LibTorch has CUDA (model/CMakeLists.txt decides), else these do nothing.
#ifndef FEDFM_MODEL_CUDA_STREAMS_H_
#define FEDFM_MODEL_CUDA_STREAMS_H_

#include <memory>

namespace fedfm::model {

// While it lives, the calling thread's LibTorch work on CUDA device
// `device_index` goes to stream `slot` of that device: one stream of
// LibTorch's pool per (device, slot), the same for the life of the process.
// On destruction it waits for that stream's work and restores the thread's
// previous stream. Without CUDA: does nothing.
class CudaStreamScope {
 public:
  CudaStreamScope(int device_index, int slot);
  ~CudaStreamScope();
  CudaStreamScope(const CudaStreamScope&) = delete;
  CudaStreamScope& operator=(const CudaStreamScope&) = delete;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// CUDA devices visible to this process (0 without CUDA).
int CudaDeviceCount();

// Waits for all work queued on CUDA device `device_index` (no-op without CUDA).
void SynchronizeCudaDevice(int device_index);

}  // namespace fedfm::model

#endif  // FEDFM_MODEL_CUDA_STREAMS_H_
