#include "model/runtime.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <algorithm>
#include <thread>

#include "protocols/check.h"

namespace fedfm::model {

void SetTorchThreads(int n) {
  FEDFM_CHECK(n >= 0);
  const int threads = n > 0 ? n : std::max(1u, std::thread::hardware_concurrency());
  at::set_num_threads(threads);
}

int TorchThreads() { return at::get_num_threads(); }

const char* TorchVersion() { return TORCH_VERSION; }

bool CudaAvailable() { return torch::cuda::is_available(); }

}  // namespace fedfm::model
