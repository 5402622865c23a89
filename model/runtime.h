// Process-wide LibTorch runtime settings, behind a torch-free header so that
// callers (the CLI) need not include LibTorch.
#ifndef FEDFM_MODEL_RUNTIME_H_
#define FEDFM_MODEL_RUNTIME_H_

namespace fedfm::model {

// Sets LibTorch's intra-op thread count: n > 0 threads, or every core
// (std::thread::hardware_concurrency) when n == 0. Process-wide; call it once
// at start-up, before heavy work. Negative n is a bug.
void SetTorchThreads(int n);

// Makes the C allocator keep freed large blocks for reuse instead of
// returning them to the kernel (glibc: fixed mmap and trim thresholds of
// 256 MiB / 1 GiB). LibTorch's CPU tensors come straight from malloc, so
// without this every forward pass faults in fresh pages for its multi-MiB
// activations (about a third of stories260K's forward time on 2 cores).
// Process-wide; the memory stays with the process as its high-water mark.
// No-op on other C libraries.
void RetainFreedHostMemory();

// LibTorch's current intra-op thread count.
int TorchThreads();

// The linked LibTorch's version ("1.13.0") and whether it can reach a CUDA device.
const char* TorchVersion();
bool CudaAvailable();

}  // namespace fedfm::model

#endif  // FEDFM_MODEL_RUNTIME_H_
