#include "model/runtime.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/version.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <thread>

#include "protocols/check.h"

namespace fedfm::model {

void SetTorchThreads(int n) {
  FEDFM_CHECK(n >= 0);
  const int threads = n > 0 ? n : std::max(1u, std::thread::hardware_concurrency());
  at::set_num_threads(threads);
}

void RetainFreedHostMemory() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

int TorchThreads() { return at::get_num_threads(); }

const char* TorchVersion() { return TORCH_VERSION; }

bool CudaAvailable() { return torch::cuda::is_available(); }

}  // namespace fedfm::model
