// Base-model placement (dtype and device) from the strings of the local
// training and zeroth-order benchmark requests. Not a public interface.
#ifndef FEDFM_CLIENT_INTERNAL_MODEL_OPTIONS_H_
#define FEDFM_CLIENT_INTERNAL_MODEL_OPTIONS_H_

#include <string>

#include "absl/status/statusor.h"
#include "model/transformer.h"

namespace fedfm::client::internal {

// dtype "f32" | "bf16", device "cpu" | "cuda[:N]". InvalidArgument for any
// other value (naming it), FailedPrecondition for a cuda device when this
// LibTorch build or machine has no CUDA.
absl::StatusOr<model::ModelOptions> ParseModelOptions(const std::string& dtype, const std::string& device);

}  // namespace fedfm::client::internal

#endif  // FEDFM_CLIENT_INTERNAL_MODEL_OPTIONS_H_
