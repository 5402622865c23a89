#include "aggregation/server_optimizer.h"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "protocols/check.h"
#include "protocols/status_macros.h"

namespace fedfm::aggregation {
namespace {

using protocols::AggregationOptions;
using protocols::DType;
using protocols::Tensor;
using protocols::TensorMap;

enum class Algorithm { kFedAvg, kFedAvgM, kFedAdagrad, kFedAdam, kFedYogi };

struct AlgorithmInfo {
  Algorithm algorithm;
  const char* name;
  bool has_m;
  bool has_v;
};

constexpr AlgorithmInfo kAlgorithms[] = {
    {Algorithm::kFedAvg, "fedavg", false, false},      {Algorithm::kFedAvgM, "fedavgm", true, false},
    {Algorithm::kFedAdagrad, "fedadagrad", true, true}, {Algorithm::kFedAdam, "fedadam", true, true},
    {Algorithm::kFedYogi, "fedyogi", true, true},
};

Tensor Filled(const protocols::Shape& shape, float value) {
  Tensor t = Tensor::Zeros(DType::kF32, shape);
  if (value != 0.0f) {
    for (float& x : t.mutable_floats()) x = value;
  }
  return t;
}

Tensor StepTensor(int64_t steps) {
  Tensor t = Tensor::Zeros(DType::kI64, {1});
  std::memcpy(t.mutable_bytes().data(), &steps, sizeof(steps));
  return t;
}

class ReddiOptimizer final : public ServerOptimizer {
 public:
  ReddiOptimizer(const AlgorithmInfo& info, const AggregationOptions& options) : info_(info), options_(options) {}

  const char* name() const override { return info_.name; }
  int64_t steps() const override { return steps_; }

  absl::StatusOr<TensorMap> Step(const TensorMap& global, const TensorMap& pseudo_gradient) override {
    FEDFM_RETURN_IF_ERROR(Validate(global, pseudo_gradient));
    const double lr = options_.server_lr, mu = options_.momentum, b1 = options_.beta1, b2 = options_.beta2,
                 tau = options_.tau;
    TensorMap next;
    for (const auto& [name, g] : global) {
      std::span<const float> delta = pseudo_gradient.at(name).floats();
      std::vector<float> x_storage;
      std::span<const float> x;
      if (g.dtype() == DType::kF32) {
        x = g.floats();
      } else {
        x_storage = g.ToFloat32();
        x = x_storage;
      }
      Tensor out = Tensor::Zeros(DType::kF32, g.shape());
      std::span<float> y = out.mutable_floats();
      std::span<float> m, v;
      if (info_.has_m) {
        if (!m_.Contains(name)) m_.Set(name, Filled(g.shape(), 0.0f));
        m = m_.FindMutable(name)->mutable_floats();
      }
      if (info_.has_v) {
        if (!v_.Contains(name)) v_.Set(name, Filled(g.shape(), static_cast<float>(tau * tau)));
        v = v_.FindMutable(name)->mutable_floats();
      }
      for (size_t i = 0; i < delta.size(); ++i) {
        const double d = delta[i];
        double step;
        switch (info_.algorithm) {
          case Algorithm::kFedAvg:
            step = d;
            break;
          case Algorithm::kFedAvgM: {
            const double mi = mu * m[i] + d;
            m[i] = static_cast<float>(mi);
            step = mi;
            break;
          }
          default: {
            const double mi = b1 * m[i] + (1.0 - b1) * d;
            const double d2 = d * d;
            double vi = v[i];
            if (info_.algorithm == Algorithm::kFedAdagrad) {
              vi = vi + d2;
            } else if (info_.algorithm == Algorithm::kFedAdam) {
              vi = b2 * vi + (1.0 - b2) * d2;
            } else {
              const double s = vi > d2 ? 1.0 : (vi < d2 ? -1.0 : 0.0);
              vi = vi - (1.0 - b2) * d2 * s;
            }
            m[i] = static_cast<float>(mi);
            v[i] = static_cast<float>(vi);
            step = mi / (std::sqrt(vi) + tau);
            break;
          }
        }
        y[i] = static_cast<float>(static_cast<double>(x[i]) + lr * step);
      }
      next.Set(name, g.dtype() == DType::kF32 ? std::move(out) : out.To(g.dtype()));
    }
    ++steps_;
    return next;
  }

  TensorMap State() const override {
    TensorMap state;
    state.Set("step", StepTensor(steps_));
    for (const auto& [name, t] : m_) state.Set("m/" + name, t);
    for (const auto& [name, t] : v_) state.Set("v/" + name, t);
    return state;
  }

  absl::Status LoadState(const TensorMap& state) override {
    int64_t steps = -1;
    TensorMap m, v;
    for (const auto& [key, t] : state) {
      if (key == "step") {
        if (t.dtype() != DType::kI64 || t.numel() != 1) {
          return absl::InvalidArgumentError(absl::StrCat(info_.name, " state key \"step\" must be I64 [1], got ",
                                                         protocols::DTypeName(t.dtype()), " ",
                                                         protocols::ShapeString(t.shape())));
        }
        std::memcpy(&steps, t.bytes().data(), sizeof(steps));
        continue;
      }
      const bool is_m = key.starts_with("m/") && info_.has_m;
      const bool is_v = key.starts_with("v/") && info_.has_v;
      if ((!is_m && !is_v) || key.size() <= 2) {
        return absl::InvalidArgumentError(
            absl::StrCat("state key \"", key, "\" is not part of the ", info_.name, " optimizer state"));
      }
      if (t.dtype() != DType::kF32) {
        return absl::InvalidArgumentError(absl::StrCat(info_.name, " state key \"", key, "\" must be F32, got ",
                                                       protocols::DTypeName(t.dtype())));
      }
      (is_m ? m : v).Set(key.substr(2), t);
    }
    if (steps < 0) {
      return absl::InvalidArgumentError(absl::StrCat(info_.name, " state lacks a valid \"step\" entry"));
    }
    steps_ = steps;
    m_ = std::move(m);
    v_ = std::move(v);
    return absl::OkStatus();
  }

 private:
  absl::Status Validate(const TensorMap& global, const TensorMap& pseudo_gradient) const {
    if (pseudo_gradient.size() != global.size()) {
      return absl::InvalidArgumentError(absl::StrCat("pseudo-gradient holds ", pseudo_gradient.size(),
                                                     " tensors, the global state ", global.size()));
    }
    for (const auto& [name, g] : global) {
      const Tensor* d = pseudo_gradient.Find(name);
      if (d == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("pseudo-gradient lacks tensor \"", name, "\""));
      }
      if (d->dtype() != DType::kF32 || d->shape() != g.shape()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "pseudo-gradient tensor \"", name, "\" is ", protocols::DTypeName(d->dtype()), " ",
            protocols::ShapeString(d->shape()), ", expected F32 ", protocols::ShapeString(g.shape())));
      }
      if (g.dtype() != DType::kF32 && g.dtype() != DType::kBF16 && g.dtype() != DType::kF16 &&
          g.dtype() != DType::kF64) {
        return absl::InvalidArgumentError(absl::StrCat("global tensor \"", name, "\" has dtype ",
                                                       protocols::DTypeName(g.dtype()), ", not a float type"));
      }
      for (const TensorMap* state : {&m_, &v_}) {
        const Tensor* s = state->Find(name);
        if (s != nullptr && s->shape() != g.shape()) {
          return absl::InvalidArgumentError(absl::StrCat(
              info_.name, " state \"", state == &m_ ? "m/" : "v/", name, "\" has shape ",
              protocols::ShapeString(s->shape()), " but the global tensor has ", protocols::ShapeString(g.shape())));
        }
      }
    }
    return absl::OkStatus();
  }

  AlgorithmInfo info_;
  AggregationOptions options_;
  int64_t steps_ = 0;
  TensorMap m_;  // per global tensor name
  TensorMap v_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ServerOptimizer>> MakeServerOptimizer(const AggregationOptions& options) {
  const AlgorithmInfo* info = nullptr;
  for (const AlgorithmInfo& a : kAlgorithms) {
    if (options.algorithm == a.name) info = &a;
  }
  if (info == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("aggregation.algorithm must be one of fedavg, fedavgm, fedadam, fedyogi, fedadagrad; got \"",
                     options.algorithm, "\""));
  }
  auto range = [](const char* key, double value, double lo, double hi, bool open_lo) -> absl::Status {
    if (!(open_lo ? value > lo : value >= lo) || !(value <= hi) || !std::isfinite(value)) {
      return absl::InvalidArgumentError(absl::StrCat("aggregation.", key, " must be in ", open_lo ? "(" : "[", lo,
                                                     ", ", hi, "], got ", value));
    }
    return absl::OkStatus();
  };
  for (absl::Status s : {range("server_lr", options.server_lr, 0.0, 1e6, true),
                         range("momentum", options.momentum, 0.0, 1.0, false),
                         range("beta1", options.beta1, 0.0, 1.0, false),
                         range("beta2", options.beta2, 0.0, 1.0, false), range("tau", options.tau, 0.0, 1e6, true)}) {
    if (!s.ok()) return s;
  }
  return std::unique_ptr<ServerOptimizer>(new ReddiOptimizer(*info, options));
}

}  // namespace fedfm::aggregation
