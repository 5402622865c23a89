// Process-wide LibTorch runtime settings, behind a torch-free header so that
// callers (the CLI) need not include LibTorch.
#ifndef FEDFM_MODEL_RUNTIME_H_
#define FEDFM_MODEL_RUNTIME_H_

namespace fedfm::model {

// Sets LibTorch's intra-op thread count: n > 0 threads, or every core
// (std::thread::hardware_concurrency) when n == 0. Process-wide; call it once
// at start-up, before heavy work. Negative n is a bug.
void SetTorchThreads(int n);

// LibTorch's current intra-op thread count.
int TorchThreads();

// The linked LibTorch's version ("1.13.0") and whether it can reach a CUDA device.
const char* TorchVersion();
bool CudaAvailable();

}  // namespace fedfm::model

#endif  // FEDFM_MODEL_RUNTIME_H_
