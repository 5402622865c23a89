#include "protocols/update.h"

#include <bit>
#include <cmath>
#include <cstdint>
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

namespace {

// True when no element is NaN or infinite (exponent bits all ones); written
// without an early exit so that the compiler vectorises it.
bool AllFinite(std::span<const float> v) {
  uint32_t any_special = 0;
  for (const float x : v) {
    const uint32_t bits = std::bit_cast<uint32_t>(x);
    any_special |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  return any_special == 0;
}

}  // namespace

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
    if (AllFinite(v)) {  // the common case, checked without allocating
      if (c.rank_dim < 0) continue;
      // Every nonzero value lies inside the coverage iff counting them over
      // the tensor and over the covered elements agrees.
      int64_t nonzero = 0, covered_nonzero = 0;
      for (const float x : v) nonzero += x != 0.0f;
      ForEachCovered(*t, c, [&](int64_t i) { covered_nonzero += v[static_cast<size_t>(i)] != 0.0f; });
      if (nonzero == covered_nonzero) continue;
    }
    // Something is wrong: find the first offending element to name it.
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
