// The one place where the trainers touch LibTorch-version- or
// build-specific APIs: CUDA bf16 autocast (whose C++ API changed in 2.4),
// CUDA allocator statistics (only in CUDA builds of LibTorch), process peak
// memory, and out-of-memory detection. Not a public interface.
#ifndef FEDFM_CLIENT_INTERNAL_TORCH_COMPAT_H_
#define FEDFM_CLIENT_INTERNAL_TORCH_COMPAT_H_

#include <torch/torch.h>

#include <cstdint>

namespace fedfm::client::internal {

// Enables bf16 autocast for CUDA ops on the current thread while alive
// (autocast state is thread-local). A no-op unless `enabled` and `device`
// is CUDA. Restores the previous state on destruction.
class Bf16AutocastGuard {
 public:
  Bf16AutocastGuard(const torch::Device& device, bool enabled);
  ~Bf16AutocastGuard();
  Bf16AutocastGuard(const Bf16AutocastGuard&) = delete;
  Bf16AutocastGuard& operator=(const Bf16AutocastGuard&) = delete;
  bool active() const { return active_; }

 private:
  bool active_ = false;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kHalf;
};

// Peak memory of the work between construction and PeakBytes():
//   CUDA: the caching allocator's peak allocated bytes on the device (its
//         peak counter is reset at construction; device-wide);
//   CPU:  peak resident set size above the RSS at construction (Linux
//         /proc/self/status VmHWM after resetting it through
//         /proc/self/clear_refs; process-wide, so concurrent trainers see
//         each other's memory).
// -1 when unknown (no CUDA statistics in this build, no /proc, reset refused).
class PeakMemoryMeter {
 public:
  explicit PeakMemoryMeter(const torch::Device& device);
  int64_t PeakBytes() const;

 private:
  torch::Device device_;
  int64_t rss_start_ = -1;
};

// Whether `error` reports an allocation failure (CPU or CUDA).
bool IsOutOfMemory(const c10::Error& error);

}  // namespace fedfm::client::internal

#endif  // FEDFM_CLIENT_INTERNAL_TORCH_COMPAT_H_
