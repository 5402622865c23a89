#include "client/internal/model_options.h"

#include <torch/torch.h>

#include "absl/strings/str_cat.h"

namespace fedfm::client::internal {

absl::StatusOr<model::ModelOptions> ParseModelOptions(const std::string& dtype, const std::string& device) {
  model::ModelOptions o;
  if (dtype == "bf16") {
    o.dtype = torch::kBFloat16;
  } else if (dtype != "f32") {
    return absl::InvalidArgumentError(absl::StrCat("dtype must be f32 or bf16, got \"", dtype, "\""));
  }
  if (device == "cpu") return o;
  if (device.rfind("cuda", 0) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("device must be cpu or cuda[:N], got \"", device, "\""));
  }
  if (!torch::cuda::is_available()) {
    return absl::FailedPreconditionError(absl::StrCat("device \"", device, "\": no CUDA device"));
  }
  try {
    o.device = torch::Device(device);
  } catch (const c10::Error&) {
    return absl::InvalidArgumentError(absl::StrCat("bad device \"", device, "\""));
  }
  return o;
}

}  // namespace fedfm::client::internal
