#include "client/testing/fake_trainer.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "model/dataset_rng.h"
#include "protocols/status_macros.h"

namespace fedfm::client {
namespace {

using protocols::Tensor;
using protocols::TensorMap;
using protocols::Update;
using protocols::UpdateKind;

// Uniform in [-1, 1).
double Uniform(uint64_t& state) { return static_cast<double>(model::SplitMix64(state) >> 11) * 0x1.0p-52 - 1.0; }

uint64_t HashName(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

FakeTrainer::FakeTrainer(FakeTrainerOptions options) : options_(std::move(options)) {}

TensorMap FakeTrainer::Target(const TensorMap& like) const {
  TensorMap target;
  for (const auto& [name, t] : like) {
    uint64_t state = options_.target_seed ^ HashName(name);
    std::vector<float> v(static_cast<size_t>(t.numel()));
    for (float& x : v) x = static_cast<float>(options_.target_scale * Uniform(state));
    target.Set(name, Tensor::FromFloats(t.shape(), v));
  }
  return target;
}

double FakeTrainer::Loss(const TensorMap& state) const {
  const TensorMap target = Target(state);
  double sum = 0;
  int64_t n = 0;
  for (const auto& [name, t] : state) {
    const std::vector<float> v = t.ToFloat32();
    std::span<const float> goal = target.at(name).floats();
    for (size_t i = 0; i < v.size(); ++i) {
      const double d = static_cast<double>(v[i]) - goal[i];
      sum += d * d;
    }
    n += t.numel();
  }
  return n > 0 ? sum / static_cast<double>(n) : 0.0;
}

absl::StatusOr<Update> FakeTrainer::Train(const protocols::Task& task, TrainableState& state, Dataset& data) {
  (void)data;
  if (!options_.fail_with.ok()) return options_.fail_with;
  const TensorMap target = Target(state);
  Update u;
  const double examples = static_cast<double>(task.local_steps) * task.batch_size *
                          std::max(1, task.grad_accumulation) * options_.examples_scale;
  u.num_examples = static_cast<uint64_t>(std::max(1.0, std::round(examples)));
  u.metrics["train_loss"] = Loss(state);
  const double q = std::clamp(options_.quality, 0.0, 1.0);
  uint64_t noise = task.round_seed ^ 0xFA4E7A1Eull;
  if (!task.seed_pool.empty()) {
    if (!options_.direction) {
      return absl::FailedPreconditionError("FakeTrainer: a seed-scalar task needs FakeTrainerOptions::direction");
    }
    int64_t numel = state.TotalElements();
    u.kind = UpdateKind::kSeedScalars;
    for (uint64_t seed : task.seed_pool) {
      FEDFM_ASSIGN_OR_RETURN(TensorMap z, options_.direction(seed, state));
      double g = 0;
      for (const auto& [name, t] : state) {
        const std::vector<float> v = t.ToFloat32();
        std::span<const float> goal = target.at(name).floats();
        const Tensor* zt = z.Find(name);
        if (zt == nullptr) continue;
        std::span<const float> zv = zt->floats();
        for (size_t i = 0; i < v.size(); ++i) g += (static_cast<double>(v[i]) - goal[i]) * zv[i];
      }
      const double s = q * g / static_cast<double>(std::max<int64_t>(1, numel)) +
                       (1.0 - q) * options_.noise_scale * Uniform(noise);
      u.seed_scalars.push_back(static_cast<float>(s));
    }
  } else {
    const double step = std::min(1.0, task.learning_rate * task.local_steps);
    for (const protocols::TensorCoverage& c : task.coverage.tensors) {
      const Tensor* t = state.Find(c.name);
      if (t == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("FakeTrainer: task covers tensor \"", c.name, "\", which the state lacks"));
      }
      const std::vector<float> v = t->ToFloat32();
      std::span<const float> goal = target.at(c.name).floats();
      Tensor d = Tensor::Zeros(protocols::DType::kF32, t->shape());
      std::span<float> out = d.mutable_floats();
      protocols::ForEachCovered(d, c, [&](int64_t i) {
        out[i] = static_cast<float>(q * step * (goal[i] - static_cast<double>(v[i])) +
                                    (1.0 - q) * options_.noise_scale * Uniform(noise));
      });
      u.delta.Set(c.name, std::move(d));
    }
    u.coverage = task.coverage;
  }
  ++trained_;
  return u;
}

absl::StatusOr<protocols::EvalReport> FakeTrainer::Evaluate(const protocols::Task& task, const TrainableState& state,
                                                            Dataset& data) {
  (void)task;
  if (!options_.fail_with.ok()) return options_.fail_with;
  protocols::EvalReport r;
  const double loss = Loss(state);
  r.metrics["eval_loss"] = loss;
  r.metrics["eval_accuracy"] = std::exp(-loss);
  r.num_examples = std::max<uint64_t>(1, data.eval.size());
  ++evaluated_;
  return r;
}

}  // namespace fedfm::client
