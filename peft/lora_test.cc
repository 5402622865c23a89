// LoRA hook, merging, and freezing (StateForward) on the bundled stories260K
// model: merged == unmerged, gradients reach only the trained slices,
// heterogeneous-rank and FFA training leave the frozen values bit-identical,
// partial-layer training builds no graph below its first trainable block.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <unordered_set>

#include "model/dataset_rng.h"
#include "model/loader.h"
#include "model/torch_bridge.h"
#include "peft/lora_hook.h"
#include "peft/state.h"
#include "peft/trainable.h"

namespace fedfm::peft {
namespace {

using protocols::Coverage;
using protocols::TensorMap;

constexpr char kModel[] = "assets/stories260K/stories260K.bin";

std::shared_ptr<const model::Model> Stories() {
  static std::shared_ptr<const model::Model> model = [] {
    absl::StatusOr<std::shared_ptr<const model::Model>> m = model::LoadModel(kModel);
    EXPECT_TRUE(m.ok()) << m.status();
    return *m;
  }();
  return model;
}

LoraSpec AllSeven(int rank) {
  LoraSpec spec;
  spec.rank = rank;
  spec.alpha = 2.0 * rank;
  spec.targets.assign(model::kAllProjections.begin(), model::kAllProjections.end());
  return spec;
}

// A rank-`rank` state with every value random and non-zero (B too, as after training).
TensorMap RandomState(int rank, uint64_t seed, int full_weight_blocks = 0) {
  StateLayout layout;
  layout.lora = AllSeven(rank);
  layout.full_weight_blocks = full_weight_blocks;
  absl::StatusOr<TensorMap> state = InitTrainableState(*Stories(), layout, seed);
  EXPECT_TRUE(state.ok()) << state.status();
  model::DataRng rng(seed + 1);
  for (auto& [name, t] : *state) {
    if (name.find("lora_") == std::string::npos) continue;
    for (float& v : t.mutable_floats()) v += static_cast<float>(0.05 * rng.Normal());
  }
  return *state;
}

torch::Tensor Tokens(int64_t batch, int64_t len, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return torch::randint(1, 512, {batch, len}, gen, torch::kLong);
}

double MaxRelErr(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max()).item<double>();
}

StateForwardOptions Options(double alpha) {
  StateForwardOptions o;
  o.alpha = alpha;
  return o;
}

TEST(LoraHookTest, MatchesDenseReference) {
  at::Generator gen = at::detail::createCPUGenerator(3);
  const torch::Tensor x = torch::randn({2, 5, 64}, gen);
  const torch::Tensor w = torch::randn({48, 64}, gen);
  const torch::Tensor a = torch::randn({4, 64}, gen);
  const torch::Tensor b = torch::randn({48, 4}, gen);
  LoraHook hook(/*num_layers=*/2, /*scale=*/0.75);
  hook.Set(1, model::Projection::kUp, a, b);
  EXPECT_TRUE(hook.Covers(1, model::Projection::kUp));
  EXPECT_FALSE(hook.Covers(0, model::Projection::kUp));
  EXPECT_FALSE(hook.Covers(1, model::Projection::kGate));
  const torch::Tensor base = torch::matmul(x, w.t());
  const torch::Tensor got = hook.Apply(1, model::Projection::kUp, x, base);
  const torch::Tensor want = torch::matmul(x, (w + 0.75 * torch::matmul(b, a)).t());
  EXPECT_EQ(got.sizes(), base.sizes());
  EXPECT_LT(MaxRelErr(got, want), 1e-5);
  // A non-contiguous base output (a slice of a fused q|k|v product) works too.
  const torch::Tensor fused = torch::cat({base, base}, -1).narrow(-1, 48, 48);
  EXPECT_LT(MaxRelErr(hook.Apply(1, model::Projection::kUp, x, fused), want), 1e-5);
}

TEST(LoraHookTest, SharedInputProductsMatchSeparateOnes) {
  at::Generator gen = at::detail::createCPUGenerator(5);
  std::map<model::Projection, std::pair<torch::Tensor, torch::Tensor>> ab;
  LoraHook hook(/*num_layers=*/1, /*scale=*/1.5);
  for (model::Projection p : {model::Projection::kQ, model::Projection::kK, model::Projection::kV}) {
    ab[p] = {torch::randn({3, 64}, gen), torch::randn({p == model::Projection::kQ ? 64 : 32, 3}, gen)};
    hook.Set(0, p, ab[p].first, ab[p].second);
  }
  // Twice, with new inputs: the shared product must follow the input.
  for (int round = 0; round < 2; ++round) {
    const torch::Tensor x = torch::randn({2, 6, 64}, gen);
    for (auto& [p, m] : ab) {
      const torch::Tensor base = torch::randn({2, 6, m.second.size(0)}, gen);
      const torch::Tensor want = base + 1.5 * torch::matmul(torch::matmul(x, m.first.t()), m.second.t());
      EXPECT_LT(MaxRelErr(hook.Apply(0, p, x, base), want), 1e-5) << round << " " << model::ProjectionName(p);
    }
  }
}

TEST(LoraHookTest, DropoutIsSeededAndScaled) {
  at::Generator gen = at::detail::createCPUGenerator(4);
  const torch::Tensor x = torch::randn({3, 7, 64}, gen);
  const torch::Tensor a = torch::randn({2, 64}, gen);
  const torch::Tensor b = torch::randn({16, 2}, gen);
  const torch::Tensor base = torch::zeros({3, 7, 16});
  auto run = [&](uint64_t seed) {
    LoraHook hook(1, 1.0, 0.5, at::detail::createCPUGenerator(seed));
    hook.Set(0, model::Projection::kQ, a, b, /*dropout=*/true);
    return hook.Apply(0, model::Projection::kQ, x, base);
  };
  LoraHook plain(1, 1.0);
  plain.Set(0, model::Projection::kQ, a, b);
  const torch::Tensor no_dropout = plain.Apply(0, model::Projection::kQ, x, base);
  EXPECT_TRUE(torch::equal(run(9), run(9)));
  EXPECT_FALSE(torch::equal(run(9), run(10)));
  EXPECT_FALSE(torch::allclose(run(9), no_dropout));
  // Inverted dropout keeps the expectation: average many masks.
  torch::Tensor mean = torch::zeros_like(no_dropout);
  for (uint64_t s = 0; s < 400; ++s) mean += run(100 + s);
  mean /= 400;
  EXPECT_LT(MaxRelErr(mean, no_dropout), 0.2);
}

TEST(LoraMergeTest, MergedEqualsUnmerged) {
  const std::shared_ptr<const model::Model> base = Stories();
  const TensorMap state = RandomState(/*rank=*/4, /*seed=*/21);
  const double alpha = 8.0;
  absl::StatusOr<std::unique_ptr<StateForward>> forward = StateForward::Create(base, state, {}, Options(alpha));
  ASSERT_TRUE(forward.ok()) << forward.status();
  const torch::Tensor tokens = Tokens(2, 24, 1);
  torch::NoGradGuard no_grad;
  const torch::Tensor hooked = base->Forward(tokens, (*forward)->forward_options()).logits;
  const torch::Tensor plain = base->Forward(tokens).logits;

  absl::StatusOr<model::NamedTensors> merged = MergeState(*base, state, (*forward)->lora_scale());
  ASSERT_TRUE(merged.ok()) << merged.status();
  absl::StatusOr<std::shared_ptr<const model::Model>> merged_model = model::Model::Create(base->config(), *merged);
  ASSERT_TRUE(merged_model.ok()) << merged_model.status();
  const torch::Tensor merged_logits = (*merged_model)->Forward(tokens).logits;
  EXPECT_GT(MaxRelErr(hooked, plain), 1e-3);  // the adapter does something
  EXPECT_LT(MaxRelErr(merged_logits, hooked), 1e-5);

  // The base is untouched, and unmerging gives it back.
  EXPECT_TRUE(torch::equal(base->Forward(tokens).logits, plain));
  absl::StatusOr<model::NamedTensors> unmerged = UnmergeState(*merged, state, (*forward)->lora_scale());
  ASSERT_TRUE(unmerged.ok()) << unmerged.status();
  const model::NamedTensors original = base->NamedParameters();
  ASSERT_EQ(unmerged->size(), original.size());
  for (size_t i = 0; i < original.size(); ++i) {
    ASSERT_EQ((*unmerged)[i].first, original[i].first);
    EXPECT_TRUE(torch::allclose((*unmerged)[i].second, original[i].second, /*rtol=*/1e-5, /*atol=*/1e-6))
        << original[i].first;
  }
}

TEST(LoraTrainableTest, OnlyAdapterParametersReceiveGradients) {
  const std::shared_ptr<const model::Model> base = Stories();
  const TensorMap state = RandomState(4, 5);
  absl::StatusOr<Coverage> coverage = TrainedCoverage(state, {.method = protocols::Method::kLora}, 5);
  ASSERT_TRUE(coverage.ok());
  absl::StatusOr<std::unique_ptr<StateForward>> f = StateForward::Create(base, state, *coverage, Options(8));
  ASSERT_TRUE(f.ok()) << f.status();
  StateForward& forward = **f;
  EXPECT_EQ(forward.num_parameters(), 23120);
  forward.Materialize();
  const torch::Tensor tokens = Tokens(2, 16, 2);
  model::NextTokenLoss(base->Forward(tokens, forward.forward_options()).logits, tokens).backward();
  const torch::Tensor& grad = forward.parameters().grad();
  ASSERT_TRUE(grad.defined());
  EXPECT_GT(grad.abs().sum().item<double>(), 0);
  // Every slice of the flat buffer (every module's A and B) gets a gradient.
  EXPECT_GT(grad.ne(0).sum().item<int64_t>(), 23120 * 9 / 10);
  for (const auto& [name, t] : base->NamedParameters()) {
    EXPECT_FALSE(t.requires_grad()) << name;
    EXPECT_FALSE(t.grad().defined()) << name;
  }
}

// Takes a few plain SGD steps on `forward` and returns its state afterwards.
TensorMap TrainSteps(StateForward& forward, int steps) {
  const model::Model& m = forward.model();
  for (int s = 0; s < steps; ++s) {
    forward.Materialize();
    const torch::Tensor tokens = Tokens(2, 16, 10 + s);
    model::NextTokenLoss(m.Forward(tokens, forward.forward_options()).logits, tokens).backward();
    torch::NoGradGuard no_grad;
    forward.parameters().sub_(forward.parameters().grad() * 0.5);
    forward.parameters().mutable_grad().zero_();
  }
  absl::StatusOr<TensorMap> after = forward.CurrentState();
  EXPECT_TRUE(after.ok()) << after.status();
  return *after;
}

TEST(LoraTrainableTest, RankSliceTrainingLeavesOtherSlicesBitIdentical) {
  const TensorMap state = RandomState(4, 6);
  absl::StatusOr<Coverage> coverage =
      TrainedCoverage(state, {.method = protocols::Method::kLora, .lora_rank = 2}, 5);
  ASSERT_TRUE(coverage.ok());
  absl::StatusOr<std::unique_ptr<StateForward>> f = StateForward::Create(Stories(), state, *coverage, Options(8));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->num_parameters(), 23120 / 2);
  const TensorMap after = TrainSteps(**f, 3);
  absl::StatusOr<TensorMap> delta = (*f)->Delta();
  ASSERT_TRUE(delta.ok());
  for (const auto& [name, before] : state) {
    LoraTensorId id;
    ASSERT_TRUE(ParseLoraTensorName(name, &id));
    const int dim = id.matrix == LoraMatrix::kA ? 0 : 1;
    const torch::Tensor b0 = model::ToTorch(before), b1 = model::ToTorch(after.at(name));
    const torch::Tensor d = model::ToTorch(delta->at(name));
    // Frozen slices [2, 4): bit-identical, and no delta there.
    EXPECT_TRUE(torch::equal(b0.narrow(dim, 2, 2), b1.narrow(dim, 2, 2))) << name;
    EXPECT_TRUE(torch::equal(d.narrow(dim, 2, 2), torch::zeros_like(d.narrow(dim, 2, 2)))) << name;
    // Trained slices [0, 2) moved, and the delta says by how much.
    EXPECT_FALSE(torch::equal(b0.narrow(dim, 0, 2), b1.narrow(dim, 0, 2))) << name;
    EXPECT_TRUE(torch::allclose(b1 - b0, d, 1e-5, 1e-7)) << name;
  }
  // The update's coverage is the public rank slices.
  for (const protocols::TensorCoverage& c : (*f)->coverage().tensors) {
    EXPECT_EQ(c.rank, 2);
    EXPECT_EQ(c.rank_dim, c.name.find("lora_A") != std::string::npos ? 0 : 1);
  }
}

TEST(LoraTrainableTest, FfaKeepsABitIdentical) {
  const TensorMap state = RandomState(4, 7);
  absl::StatusOr<Coverage> coverage =
      TrainedCoverage(state, {.method = protocols::Method::kLora, .freeze_a = true}, 5);
  ASSERT_TRUE(coverage.ok());
  absl::StatusOr<std::unique_ptr<StateForward>> f = StateForward::Create(Stories(), state, *coverage, Options(8));
  ASSERT_TRUE(f.ok()) << f.status();
  const TensorMap after = TrainSteps(**f, 3);
  int moved = 0;
  for (const auto& [name, before] : state) {
    if (name.find("lora_A") != std::string::npos) {
      EXPECT_TRUE(before.Identical(after.at(name))) << name;
    } else {
      moved += before.Identical(after.at(name)) ? 0 : 1;
    }
  }
  EXPECT_EQ(moved, 5 * 7);
}

// Wraps a hook and records, per layer, whether any projection input or
// output took part in an autograd graph.
class RecordingHook final : public model::ProjectionHook {
 public:
  explicit RecordingHook(const model::ProjectionHook* inner) : inner_(inner) {}
  bool Covers(int, model::Projection) const override { return true; }
  torch::Tensor Apply(int layer, model::Projection p, const torch::Tensor& x, const torch::Tensor& y) const override {
    torch::Tensor out = inner_ != nullptr && inner_->Covers(layer, p) ? inner_->Apply(layer, p, x, y) : y;
    graph_[layer] = graph_[layer] || x.requires_grad() || out.requires_grad() || out.grad_fn() != nullptr;
    return out;
  }
  mutable std::map<int, bool> graph_;

 private:
  const model::ProjectionHook* inner_;
};

int64_t GraphNodes(const torch::Tensor& loss) {
  std::unordered_set<torch::autograd::Node*> seen;
  std::vector<torch::autograd::Node*> stack{loss.grad_fn().get()};
  while (!stack.empty()) {
    torch::autograd::Node* n = stack.back();
    stack.pop_back();
    if (n == nullptr || !seen.insert(n).second) continue;
    for (const torch::autograd::Edge& e : n->next_edges()) stack.push_back(e.function.get());
  }
  return static_cast<int64_t>(seen.size());
}

TEST(PartialLayerTest, NoGraphBelowTheTrainedBlocks) {
  const std::shared_ptr<const model::Model> base = Stories();
  const TensorMap state = RandomState(4, 8, /*full_weight_blocks=*/5);
  const torch::Tensor tokens = Tokens(2, 16, 3);
  std::map<int, int64_t> nodes;
  for (bool full_weights : {false, true}) {
    for (int k : {1, 2, 5}) {
      const TrainRequest request{.method = protocols::Method::kPartial, .top_blocks = k, .full_weights = full_weights};
      absl::StatusOr<Coverage> coverage = TrainedCoverage(state, request, 5);
      ASSERT_TRUE(coverage.ok()) << coverage.status();
      absl::StatusOr<std::unique_ptr<StateForward>> f = StateForward::Create(base, state, *coverage, Options(8));
      ASSERT_TRUE(f.ok()) << f.status();
      EXPECT_EQ((*f)->first_trainable_block(), 5 - k);
      (*f)->Materialize();
      model::ForwardOptions options = (*f)->forward_options();
      RecordingHook recorder(options.hook);
      options.hook = &recorder;
      const torch::Tensor loss = model::NextTokenLoss(base->Forward(tokens, options).logits, tokens);
      for (int layer = 0; layer < 5; ++layer) {
        EXPECT_EQ(recorder.graph_[layer], layer >= 5 - k) << "k " << k << " layer " << layer;
      }
      if (!full_weights) nodes[k] = GraphNodes(loss);
      loss.backward();
      const torch::Tensor grad = (*f)->parameters().grad();
      ASSERT_TRUE(grad.defined());
      EXPECT_GT(grad.abs().sum().item<double>(), 0);
      // Full weights of the top blocks train; the base model's never.
      for (const auto& [name, t] : base->NamedParameters()) EXPECT_FALSE(t.grad().defined()) << name;
    }
  }
  // The graph (and the activations it saves) grows with k, not with the model.
  EXPECT_LT(nodes[1], nodes[2]);
  EXPECT_LT(nodes[2], nodes[5]);
  EXPECT_LT(nodes[1] * 3, nodes[5]);
}

TEST(LoraTrainableTest, RejectsStatesThatDoNotFitTheModel) {
  TensorMap state = RandomState(2, 9);
  state.Set(LoraTensorName(0, model::Projection::kQ, LoraMatrix::kA),
            protocols::Tensor::Zeros(protocols::DType::kF32, {2, 63}));
  absl::StatusOr<std::unique_ptr<StateForward>> f = StateForward::Create(Stories(), state, {}, Options(4));
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("layers.0.self_attn.q_proj.lora_A"), std::string::npos) << f.status();
  TensorMap unknown = RandomState(2, 9);
  unknown.Set("model.layers.9.input_layernorm.weight", protocols::Tensor::Zeros(protocols::DType::kF32, {64}));
  EXPECT_FALSE(StateForward::Create(Stories(), unknown, {}, Options(4)).ok());
  Coverage missing;
  missing.tensors.push_back({"base_model.model.model.layers.0.self_attn.q_proj.lora_C.weight", -1, 0});
  EXPECT_FALSE(StateForward::Create(Stories(), RandomState(2, 9), missing, Options(4)).ok());
}

}  // namespace
}  // namespace fedfm::peft
