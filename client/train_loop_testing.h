// Shared fixtures of the trainer tests (not linked into the library): the
// bundled stories260K model, tiny Shakespeare windows, a synthetic
// classification set, and small TensorMap arithmetic.
#ifndef FEDFM_CLIENT_TRAIN_LOOP_TESTING_H_
#define FEDFM_CLIENT_TRAIN_LOOP_TESTING_H_

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>

#include "client/trainer.h"
#include "model/dataset.h"
#include "model/dataset_rng.h"
#include "model/loader.h"
#include "model/tokenizer.h"
#include "peft/state.h"
#include "protocols/file_util.h"

namespace fedfm::client::testing {

inline std::shared_ptr<const model::Model> Stories() {
  static const std::shared_ptr<const model::Model> model = [] {
    absl::StatusOr<std::shared_ptr<const model::Model>> m = model::LoadModel("assets/stories260K/stories260K.bin");
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? *m : nullptr;
  }();
  return model;
}

inline peft::LoraSpec AllSevenLora(int rank) {
  peft::LoraSpec spec;
  spec.rank = rank;
  spec.alpha = 2.0 * rank;
  spec.targets.assign(model::kAllProjections.begin(), model::kAllProjections.end());
  return spec;
}

// Next-token windows of 64 tokens from the first 120 kB of tiny Shakespeare:
// 64 held-out windows for eval, the rest for training.
inline const Dataset& ShakespeareData() {
  static const Dataset data = [] {
    Dataset d;
    absl::StatusOr<std::string> text = protocols::ReadFileToString("assets/tinyshakespeare/input.txt");
    absl::StatusOr<std::unique_ptr<model::Tokenizer>> tok = model::LoadTokenizer("assets/stories260K/tok512.bin");
    EXPECT_TRUE(text.ok() && tok.ok());
    if (!text.ok() || !tok.ok()) return d;
    std::vector<int32_t> ids = (*tok)->Encode(text->substr(0, 120000), /*add_bos=*/true, /*add_eos=*/false);
    model::WindowOptions w;
    w.seq_len = 64;
    std::vector<model::Example> all = model::MakeLmWindows(ids, w);
    const model::TrainEvalSplit split = model::SplitTrainEval(all.size(), 0.1, /*seed=*/17);
    for (size_t i : split.train) d.train.push_back(all[i]);
    for (size_t i : split.eval) {
      if (d.eval.size() < 64) d.eval.push_back(all[i]);
    }
    return d;
  }();
  return data;
}

// Random tokens from [8, 258) for label 0 and from [258, 508) for label 1.
inline Dataset TokenClassificationData(int n, int len) {
  Dataset d;
  d.num_labels = 2;
  for (uint64_t part = 0; part < 2; ++part) {
    model::DataRng rng(1000 + part);
    for (int i = 0; i < n; ++i) {
      model::Example e;
      e.label = static_cast<int32_t>(rng.Uniform(2));
      for (int t = 0; t < len; ++t) e.tokens.push_back(static_cast<int32_t>(8 + 250 * e.label + rng.Uniform(250)));
      (part == 0 ? d.train : d.eval).push_back(std::move(e));
    }
  }
  return d;
}

inline protocols::TensorMap ApplyDelta(const protocols::TensorMap& state, const protocols::TensorMap& delta) {
  protocols::TensorMap out = state;
  for (const auto& [name, d] : delta) {
    protocols::Tensor* t = out.FindMutable(name);
    EXPECT_NE(t, nullptr) << name;
    if (t == nullptr) continue;
    std::span<float> v = t->mutable_floats();
    std::span<const float> dv = d.floats();
    for (size_t i = 0; i < v.size(); ++i) v[i] += dv[i];
  }
  return out;
}

inline protocols::TensorMap Subtract(const protocols::TensorMap& a, const protocols::TensorMap& b) {
  protocols::TensorMap out = a;
  for (auto& [name, t] : out) {
    std::span<float> v = t.mutable_floats();
    std::span<const float> w = b.at(name).floats();
    for (size_t i = 0; i < v.size(); ++i) v[i] -= w[i];
  }
  return out;
}

inline double DeltaNorm(const protocols::TensorMap& delta) {
  double sum = 0;
  for (const auto& [name, t] : delta) {
    for (float x : t.floats()) sum += static_cast<double>(x) * x;
  }
  return std::sqrt(sum);
}

}  // namespace fedfm::client::testing

#endif  // FEDFM_CLIENT_TRAIN_LOOP_TESTING_H_
