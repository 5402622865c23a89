#include "protocols/update.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"

namespace fedfm::protocols {

Coverage Coverage::Full(const TensorMap& state) {
  Coverage c;
  for (const auto& [name, _] : state) c.tensors.push_back({name, -1, 0});
  return c;
}

const TensorCoverage* Coverage::Find(const std::string& name) const {
  for (const TensorCoverage& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

absl::Status ValidateDenseUpdate(const Update& update, const TensorMap& global) {
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("update from client \"", update.client_id, "\": ", what));
  };
  if (update.kind != UpdateKind::kDense) return bad("is not a dense update");
  if (update.num_examples == 0) return bad("num_examples is 0");
  if (update.delta.size() != update.coverage.tensors.size()) {
    return bad(absl::StrCat("carries ", update.delta.size(), " tensors but its coverage lists ",
                            update.coverage.tensors.size()));
  }
  for (const TensorCoverage& c : update.coverage.tensors) {
    const Tensor* g = global.Find(c.name);
    if (g == nullptr) return bad(absl::StrCat("tensor \"", c.name, "\" is not part of the global state"));
    const Tensor* t = update.delta.Find(c.name);
    if (t == nullptr) return bad(absl::StrCat("coverage names \"", c.name, "\" but the delta lacks it"));
    if (t->dtype() != DType::kF32) {
      return bad(absl::StrCat("tensor \"", c.name, "\" has dtype ", DTypeName(t->dtype()), ", expected F32"));
    }
    if (t->shape() != g->shape()) {
      return bad(absl::StrCat("tensor \"", c.name, "\" has shape ", ShapeString(t->shape()), ", expected ",
                              ShapeString(g->shape())));
    }
    if (c.rank_dim >= 0 && (c.rank_dim >= static_cast<int>(g->shape().size()) || c.rank < 1 ||
                            c.rank > g->shape()[c.rank_dim])) {
      return bad(absl::StrCat("tensor \"", c.name, "\": coverage rank ", c.rank, " along dim ", c.rank_dim,
                              " is outside shape ", ShapeString(g->shape())));
    }
    std::span<const float> v = t->floats();
    std::vector<bool> covered(v.size(), c.rank_dim < 0);
    if (c.rank_dim >= 0) ForEachCovered(*t, c, [&](int64_t i) { covered[i] = true; });
    for (size_t i = 0; i < v.size(); ++i) {
      if (!std::isfinite(v[i])) {
        return bad(absl::StrCat("tensor \"", c.name, "\" holds a non-finite value at element ", i));
      }
      if (!covered[i] && v[i] != 0.0f) {
        return bad(absl::StrCat("tensor \"", c.name, "\" has a nonzero value at element ", i,
                                ", outside its declared coverage"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace fedfm::protocols
