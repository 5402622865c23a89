#include "protocols/optimizer_state.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "protocols/status_macros.h"

namespace fedfm::protocols {

bool IsOptimizerState(std::string_view name) { return name.starts_with(kOptimizerStatePrefix); }

bool HasOptimizerState(const TensorMap& state) {
  for (const auto& [name, t] : state) {
    if (IsOptimizerState(name)) return true;
  }
  return false;
}

TensorMap WithoutOptimizerState(const TensorMap& state) {
  TensorMap out;
  for (const auto& [name, t] : state) {
    if (!IsOptimizerState(name)) out.Set(name, t);
  }
  return out;
}

absl::StatusOr<TensorMap> WithZeroOptimizerState(const TensorMap& state) {
  if (HasOptimizerState(state)) return absl::InvalidArgumentError("the state already holds optimizer state");
  TensorMap out = state;
  for (const char* prefix : {kExpAvgPrefix, kExpAvgSqPrefix}) {
    for (const auto& [name, t] : state) {
      if (!IsFloating(t.dtype())) {
        return absl::InvalidArgumentError(
            absl::StrCat("state tensor \"", name, "\" is ", DTypeName(t.dtype()), ", not floating point"));
      }
      FEDFM_RETURN_IF_ERROR(out.Insert(absl::StrCat(prefix, name), Tensor::Zeros(DType::kF32, t.shape())));
    }
  }
  FEDFM_RETURN_IF_ERROR(out.Insert(kOptimizerStepName, Tensor::Zeros(DType::kF32, {1})));
  return out;
}

absl::StatusOr<Coverage> WithOptimizerStateCoverage(const TensorMap& state, const Coverage& coverage) {
  Coverage out = coverage;
  for (const char* prefix : {kExpAvgPrefix, kExpAvgSqPrefix}) {
    for (const TensorCoverage& c : coverage.tensors) {
      std::string name = absl::StrCat(prefix, c.name);
      if (!state.Contains(name)) {
        return absl::InvalidArgumentError(absl::StrCat("the state has no \"", name, "\" for trained tensor \"",
                                                       c.name, "\""));
      }
      out.tensors.push_back({std::move(name), c.rank_dim, c.rank});
    }
  }
  if (!state.Contains(kOptimizerStepName)) {
    return absl::InvalidArgumentError(absl::StrCat("the state has no ", kOptimizerStepName));
  }
  out.tensors.push_back({kOptimizerStepName, -1, 0});
  return out;
}

absl::StatusOr<double> OptimizerStep(const TensorMap& state) {
  const Tensor* t = state.Find(kOptimizerStepName);
  if (t == nullptr) return absl::InvalidArgumentError(absl::StrCat("the state has no ", kOptimizerStepName));
  if (t->dtype() != DType::kF32 || t->numel() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(kOptimizerStepName, " must be one F32 value, got ",
                                                   DTypeName(t->dtype()), " ", ShapeString(t->shape())));
  }
  const double step = t->floats()[0];
  if (!std::isfinite(step) || step < 0) {
    return absl::InvalidArgumentError(absl::StrCat(kOptimizerStepName, " must be finite and >= 0, got ", step));
  }
  return step;
}

}  // namespace fedfm::protocols
