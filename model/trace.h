// A Chrome trace of what LibTorch runs (operators on the CPU and, with CUDA,
// every kernel on the device) between Start and Save: LibTorch's Kineto
// profiler, for `--trace FILE` of the benchmarks. Open the file in
// chrome://tracing or Perfetto. One recording per process at a time.
#ifndef FEDFM_MODEL_TRACE_H_
#define FEDFM_MODEL_TRACE_H_

#include <string>

#include "absl/status/status.h"

namespace fedfm::model {

class TraceRecording {
 public:
  // Starts recording CPU operators, and CUDA kernels when `cuda`.
  // FailedPrecondition when the linked LibTorch cannot profile (built without Kineto).
  static absl::Status Start(bool cuda);
  // Stops the recording and writes the trace to `path` (Internal on failure).
  static absl::Status Save(const std::string& path);
};

// fn() (an absl::StatusOr) run inside a recording saved to `path`; just fn()
// when `path` is empty. `cuda`: record CUDA kernels too.
template <typename Fn>
auto Traced(const std::string& path, bool cuda, Fn&& fn) -> decltype(fn()) {
  if (path.empty()) return fn();
  if (absl::Status started = TraceRecording::Start(cuda); !started.ok()) return started;
  auto result = fn();
  absl::Status saved = TraceRecording::Save(path);
  if (result.ok() && !saved.ok()) return saved;
  return result;
}

}  // namespace fedfm::model

#endif  // FEDFM_MODEL_TRACE_H_
