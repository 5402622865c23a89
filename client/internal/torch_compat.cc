#include "client/internal/torch_compat.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <algorithm>
#include <string>

#include "model/internal/device_stats.h"

// LibTorch 2.4 made the autocast switches per device type.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define FEDFM_AUTOCAST_PER_DEVICE 1
#else
#define FEDFM_AUTOCAST_PER_DEVICE 0
#endif

namespace fedfm::client::internal {

Bf16AutocastGuard::Bf16AutocastGuard(const torch::Device& device, bool enabled) {
  if (!enabled || !device.is_cuda()) return;
  active_ = true;
#if FEDFM_AUTOCAST_PER_DEVICE
  previous_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
  previous_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
#else
  previous_enabled_ = at::autocast::is_enabled();
  previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
  at::autocast::set_enabled(true);
  at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
#endif
  at::autocast::increment_nesting();
}

Bf16AutocastGuard::~Bf16AutocastGuard() {
  if (!active_) return;
  // Casts cached for this region are dropped when the outermost region ends.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if FEDFM_AUTOCAST_PER_DEVICE
  at::autocast::set_autocast_enabled(at::kCUDA, previous_enabled_);
  at::autocast::set_autocast_dtype(at::kCUDA, previous_dtype_);
#else
  at::autocast::set_enabled(previous_enabled_);
  at::autocast::set_autocast_gpu_dtype(previous_dtype_);
#endif
}

PeakMemoryMeter::PeakMemoryMeter(const torch::Device& device) : device_(device) {
  if (device.is_cuda()) {
    model::internal::ResetCudaPeakMemory(device.has_index() ? device.index() : 0);
    return;
  }
  if (model::internal::ResetPeakRss()) rss_start_ = model::internal::CurrentRssBytes();
}

int64_t PeakMemoryMeter::PeakBytes() const {
  if (device_.is_cuda()) return model::internal::CudaPeakAllocatedBytes(device_.has_index() ? device_.index() : 0);
  if (rss_start_ < 0) return -1;
  const int64_t peak = model::internal::PeakRssBytes();
  return peak < 0 ? -1 : std::max<int64_t>(0, peak - rss_start_);
}

bool IsOutOfMemory(const c10::Error& error) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&error) != nullptr) return true;
  const std::string what = error.what_without_backtrace();
  return what.find("out of memory") != std::string::npos || what.find("DefaultCPUAllocator: can't allocate") != std::string::npos;
}

}  // namespace fedfm::client::internal
