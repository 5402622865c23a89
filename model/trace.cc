#include "model/trace.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <set>

#include "absl/strings/str_cat.h"

namespace fedfm::model {
namespace {

namespace prof = torch::profiler::impl;

}  // namespace

absl::Status TraceRecording::Start(bool cuda) {
  std::set<prof::ActivityType> activities{prof::ActivityType::CPU};
  if (cuda) activities.insert(prof::ActivityType::CUDA);
  const prof::ProfilerConfig config(prof::ProfilerState::KINETO);
  try {
    torch::autograd::profiler::prepareProfiler(config, activities);
    torch::autograd::profiler::enableProfiler(config, activities);
  } catch (const c10::Error& e) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot record a trace with this LibTorch: ", e.what_without_backtrace()));
  }
  return absl::OkStatus();
}

absl::Status TraceRecording::Save(const std::string& path) {
  try {
    std::unique_ptr<torch::autograd::profiler::ProfilerResult> result = torch::autograd::profiler::disableProfiler();
    if (result == nullptr) return absl::InternalError("trace: the profiler returned no result");
    result->save(path);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("trace ", path, ": ", e.what_without_backtrace()));
  }
  return absl::OkStatus();
}

}  // namespace fedfm::model
