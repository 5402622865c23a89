#include "model/transformer.h"

#include <ATen/CPUGeneratorImpl.h>

#include <map>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "model/loader.h"

namespace fedfm::model {
namespace {

torch::Tensor Random(std::vector<int64_t> shape, uint64_t seed, double scale = 1.0) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return scale * torch::randn(shape, gen, torch::TensorOptions().dtype(torch::kFloat));
}

torch::Tensor RandomTokens(int64_t b, int64_t t, int64_t vocab, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return torch::randint(vocab, {b, t}, gen, torch::TensorOptions().dtype(torch::kLong));
}

// D = 32, F = 48, 3 blocks, H = 4, KV = 2 (grouped-query), V = 50.
ModelConfig TinyConfig(bool qwen_biases = false) {
  ModelConfig c;
  c.architecture = qwen_biases ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
  c.dim = 32;
  c.hidden_dim = 48;
  c.n_layers = 3;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 50;
  c.max_seq_len = 32;
  c.tied_head = !qwen_biases;
  c.qkv_bias = qwen_biases;
  c.norm_eps = 1e-5;
  return c;
}

std::shared_ptr<const Model> TinyModel(bool qwen_biases = false, uint64_t seed = 7,
                                       torch::ScalarType dtype = torch::kFloat) {
  auto model = Model::RandomInit(TinyConfig(qwen_biases), seed, ModelOptions{dtype, torch::kCPU});
  EXPECT_TRUE(model.ok()) << model.status();
  return *model;
}

double MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat) - b.to(torch::kFloat)).abs().max().item<double>();
}

// Adds x dW^T to chosen projections: the effect of weight W + dW.
class DeltaHook : public ProjectionHook {
 public:
  std::map<std::pair<int, Projection>, torch::Tensor> deltas;  // [out, in]
  bool Covers(int layer, Projection p) const override { return deltas.count({layer, p}) > 0; }
  torch::Tensor Apply(int layer, Projection p, const torch::Tensor& x, const torch::Tensor& y) const override {
    return y + torch::linear(x, deltas.at({layer, p}));
  }
};

TEST(ModelTransformerTest, ParameterCountMatchesConfig) {
  for (bool qwen : {false, true}) {
    auto model = TinyModel(qwen);
    EXPECT_EQ(model->NumParameters(), model->config().NumParameters());
    EXPECT_EQ(model->NamedParameters().size(), TensorSpecs(model->config()).size());
  }
}

TEST(ModelTransformerTest, LogitsHaveVocabShapeAndDependOnTokens) {
  auto model = TinyModel();
  torch::Tensor tokens = RandomTokens(2, 9, 50, 1);
  ForwardResult out = model->Forward(tokens, {.return_hidden = true});
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{2, 9, 50}));
  EXPECT_EQ(out.hidden.sizes(), (std::vector<int64_t>{2, 9, 32}));
  EXPECT_FALSE(out.logits.requires_grad());
  // Causal: changing the last token changes only the last position.
  torch::Tensor changed = tokens.clone();
  changed[0][8] = (changed[0][8].item<int64_t>() + 1) % 50;
  torch::Tensor out2 = model->Forward(changed).logits;
  EXPECT_LT(MaxAbsDiff(out.logits.narrow(1, 0, 8), out2.narrow(1, 0, 8)), 1e-6);
  EXPECT_GT(MaxAbsDiff(out.logits[0][8], out2[0][8]), 1e-4);
}

TEST(ModelTransformerTest, HookAddingDeltaEqualsModifiedWeight) {
  for (bool qwen : {false, true}) {
    auto model = TinyModel(qwen);
    torch::Tensor tokens = RandomTokens(2, 11, 50, 2);
    DeltaHook hook;
    std::map<int, BlockWeights> modified;
    uint64_t seed = 100;
    for (int layer : {0, 2}) {
      modified[layer] = model->CloneBlock(layer, /*requires_grad=*/false);
      for (Projection p : kAllProjections) {
        auto shape = ProjectionShape(model->config(), p);
        torch::Tensor delta = Random({shape[0], shape[1]}, seed++, 0.05);
        hook.deltas[{layer, p}] = delta;
        modified[layer].weight[static_cast<int>(p)] += delta;
      }
    }
    ForwardOptions with_hook;
    with_hook.hook = &hook;
    ForwardOptions with_weights;
    for (auto& [layer, w] : modified) with_weights.block_overrides[layer] = &w;
    torch::Tensor a = model->Forward(tokens, with_hook).logits;
    torch::Tensor b = model->Forward(tokens, with_weights).logits;
    torch::Tensor base = model->Forward(tokens).logits;
    EXPECT_GT(MaxAbsDiff(a, base), 1e-3) << "the deltas must matter";
    EXPECT_LT(MaxAbsDiff(a, b), 1e-5) << "qwen=" << qwen;
  }
}

TEST(ModelTransformerTest, ClonedOverridesReproduceTheFusedBase) {
  for (bool qwen : {false, true}) {
    auto model = TinyModel(qwen);
    torch::Tensor tokens = RandomTokens(3, 8, 50, 3);
    std::vector<BlockWeights> clones;
    for (int layer = 0; layer < 3; ++layer) clones.push_back(model->CloneBlock(layer, false));
    ForwardOptions options;
    for (int layer = 0; layer < 3; ++layer) options.block_overrides[layer] = &clones[layer];
    EXPECT_LT(MaxAbsDiff(model->Forward(tokens, options).logits, model->Forward(tokens).logits), 1e-5);
  }
}

TEST(ModelTransformerTest, FirstTrainableBlockKeepsGradientsAboveOnly) {
  auto model = TinyModel();
  torch::Tensor tokens = RandomTokens(2, 10, 50, 4);
  std::vector<BlockWeights> blocks;
  for (int layer = 0; layer < 3; ++layer) blocks.push_back(model->CloneBlock(layer, /*requires_grad=*/true));
  ForwardOptions options;
  for (int layer = 0; layer < 3; ++layer) options.block_overrides[layer] = &blocks[layer];
  options.first_trainable_block = 2;
  torch::Tensor logits = model->Forward(tokens, options).logits;
  NextTokenLoss(logits, tokens).backward();
  for (int layer = 0; layer < 3; ++layer) {
    for (int p = 0; p < kNumProjections; ++p) {
      EXPECT_EQ(blocks[layer].weight[p].grad().defined(), layer >= 2) << layer << " " << p;
    }
  }
  EXPECT_GT(blocks[2].weight[0].grad().abs().sum().item<double>(), 0.0);
  EXPECT_LT(MaxAbsDiff(logits, model->Forward(tokens).logits), 1e-5);
  // Base weights stay frozen.
  for (const auto& [name, t] : model->NamedParameters()) EXPECT_FALSE(t.requires_grad()) << name;
}

TEST(ModelTransformerTest, GradientsReachHookTensors) {
  auto model = TinyModel();
  torch::Tensor tokens = RandomTokens(2, 6, 50, 5);
  DeltaHook hook;
  torch::Tensor delta = Random({32, 32}, 9, 0.01).requires_grad_();
  hook.deltas[{1, Projection::kQ}] = delta;
  ForwardOptions options;
  options.hook = &hook;
  NextTokenLoss(model->Forward(tokens, options).logits, tokens).backward();
  ASSERT_TRUE(delta.grad().defined());
  EXPECT_GT(delta.grad().abs().sum().item<double>(), 0.0);
}

TEST(ModelTransformerTest, ConcurrentForwardsWithDifferentHooksMatchSequential) {
  auto model = TinyModel(/*qwen_biases=*/true);
  constexpr int kThreads = 4;
  std::vector<DeltaHook> hooks(kThreads);
  std::vector<torch::Tensor> tokens;
  for (int i = 0; i < kThreads; ++i) {
    hooks[i].deltas[{i % 3, Projection::kV}] = Random({16, 32}, 200 + i, 0.1);
    hooks[i].deltas[{(i + 1) % 3, Projection::kUp}] = Random({48, 32}, 300 + i, 0.1);
    tokens.push_back(RandomTokens(2, 12, 50, 400 + i));
  }
  std::vector<torch::Tensor> sequential;
  for (int i = 0; i < kThreads; ++i) {
    ForwardOptions options;
    options.hook = &hooks[i];
    sequential.push_back(model->Forward(tokens[i], options).logits);
  }
  std::vector<std::vector<torch::Tensor>> concurrent(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int rep = 0; rep < 5; ++rep) {
        ForwardOptions options;
        options.hook = &hooks[i];
        torch::Tensor logits = model->Forward(tokens[i], options).logits;
        NextTokenLoss(logits, tokens[i]);  // exercise the loss concurrently too
        concurrent[i].push_back(logits);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kThreads; ++i) {
    for (const torch::Tensor& logits : concurrent[i]) EXPECT_LT(MaxAbsDiff(logits, sequential[i]), 1e-6);
  }
}

TEST(ModelTransformerTest, KvCacheDecodingMatchesFullForward) {
  for (bool qwen : {false, true}) {
    auto model = TinyModel(qwen);
    torch::Tensor tokens = RandomTokens(2, 10, 50, 6);
    torch::Tensor full = model->Forward(tokens).logits;
    torch::NoGradGuard no_grad;
    KvCache cache = model->NewKvCache(2, 16);
    ForwardOptions options;
    options.kv_cache = &cache;
    torch::Tensor prefix = model->Forward(tokens.narrow(1, 0, 4), options).logits;
    EXPECT_LT(MaxAbsDiff(prefix, full.narrow(1, 0, 4)), 1e-5);
    torch::Tensor chunk = model->Forward(tokens.narrow(1, 4, 3), options).logits;  // 3 at once
    EXPECT_LT(MaxAbsDiff(chunk, full.narrow(1, 4, 3)), 1e-5);
    for (int64_t pos = 7; pos < 10; ++pos) {
      torch::Tensor step = model->Forward(tokens.narrow(1, pos, 1), options).logits;
      EXPECT_LT(MaxAbsDiff(step, full.narrow(1, pos, 1)), 1e-5) << pos;
    }
    EXPECT_EQ(cache.length, 10);
  }
}

TEST(ModelTransformerTest, RopeStylesAgreeUnderRowPermutation) {
  auto halves = TinyModel();
  ModelConfig config = halves->config();
  config.rope_style = RopeStyle::kAdjacentPairs;
  NamedTensors weights;
  for (const auto& [name, t] : halves->NamedParameters()) {
    torch::Tensor w = t.clone();
    if (name.ends_with("q_proj.weight")) w = PermuteRopeRowsFromHalves(w, config.n_heads);
    if (name.ends_with("k_proj.weight")) w = PermuteRopeRowsFromHalves(w, config.n_kv_heads);
    weights.emplace_back(name, w);
  }
  auto pairs = Model::Create(config, weights);
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  torch::Tensor tokens = RandomTokens(2, 12, 50, 8);
  EXPECT_LT(MaxAbsDiff((*pairs)->Forward(tokens).logits, halves->Forward(tokens).logits), 1e-5);
  // Without the permutation the styles disagree, so the test can fail.
  ModelConfig unpermuted = config;
  auto wrong = Model::Create(unpermuted, halves->NamedParameters());
  ASSERT_TRUE(wrong.ok());
  EXPECT_GT(MaxAbsDiff((*wrong)->Forward(tokens).logits, halves->Forward(tokens).logits), 1e-4);
  // The two permutations are inverse.
  torch::Tensor w = Random({16, 5}, 10);
  EXPECT_TRUE(torch::equal(PermuteRopeRowsFromHalves(PermuteRopeRowsToHalves(w, 2), 2), w));
}

TEST(ModelTransformerTest, BfloatCloseToFloat) {
  auto f32 = TinyModel(false, 7, torch::kFloat);
  auto bf16 = TinyModel(false, 7, torch::kBFloat16);
  torch::Tensor tokens = RandomTokens(2, 10, 50, 9);
  torch::Tensor a = f32->Forward(tokens).logits;
  torch::Tensor b = bf16->Forward(tokens).logits;
  EXPECT_EQ(b.scalar_type(), torch::kBFloat16);
  EXPECT_LT(MaxAbsDiff(a, b), 0.05 * a.abs().max().item<double>());
  const double la = NextTokenLoss(a, tokens).item<double>(), lb = NextTokenLoss(b, tokens).item<double>();
  EXPECT_NEAR(la, lb, 0.02 * la);
}

TEST(ModelTransformerTest, NextTokenLossMatchesManualCrossEntropy) {
  torch::Tensor logits = Random({2, 5, 7}, 11);
  torch::Tensor tokens = RandomTokens(2, 5, 7, 12);
  torch::Tensor mask = torch::tensor({1, 1, 0, 1, 1, 0, 1, 1, 1, 0}, torch::kLong).view({2, 5});
  torch::Tensor logp = torch::log_softmax(logits.to(torch::kDouble), -1);
  double sum = 0;
  int count = 0;
  for (int b = 0; b < 2; ++b) {
    for (int t = 0; t + 1 < 5; ++t) {
      if (mask[b][t + 1].item<int64_t>() == 0) continue;
      sum -= logp[b][t][tokens[b][t + 1].item<int64_t>()].item<double>();
      ++count;
    }
  }
  EXPECT_NEAR(NextTokenLoss(logits, tokens, mask).item<double>(), sum / count, 1e-5);
  torch::Tensor labels = NextTokenLabels(tokens, mask);
  EXPECT_EQ(labels[0][1].item<int64_t>(), kLossIgnoreIndex);  // mask[0][2] == 0
  EXPECT_EQ(labels[0][4].item<int64_t>(), kLossIgnoreIndex);  // last column
  EXPECT_EQ(labels[1][0].item<int64_t>(), tokens[1][1].item<int64_t>());
  // Every target ignored: NaN, by contract.
  EXPECT_TRUE(std::isnan(NextTokenLoss(logits, tokens, torch::zeros({2, 5}, torch::kLong)).item<double>()));
}

TEST(ModelTransformerTest, ClassificationHeadPoolsRealTokens) {
  auto model = TinyModel();
  torch::Tensor tokens = RandomTokens(2, 8, 50, 13);
  // Row 1 has 5 real tokens, then padding.
  torch::Tensor mask = torch::ones({2, 8}, torch::kLong);
  mask[1].narrow(0, 5, 3).fill_(0);
  ClassificationHead head{Random({3, 32}, 14, 0.1), Random({3}, 15, 0.1), Pooling::kLastToken};
  ForwardOptions options;
  options.classification_head = &head;
  options.attention_mask = mask;
  options.return_hidden = true;
  options.compute_logits = false;
  ForwardResult out = model->Forward(tokens, options);
  EXPECT_FALSE(out.logits.defined());
  ASSERT_EQ(out.class_logits.sizes(), (std::vector<int64_t>{2, 3}));
  // The padded row's class logits equal those of its unpadded prefix alone.
  ForwardOptions alone;
  alone.classification_head = &head;
  torch::Tensor prefix = model->Forward(tokens[1].narrow(0, 0, 5).unsqueeze(0), alone).class_logits;
  EXPECT_LT(MaxAbsDiff(out.class_logits[1], prefix[0]), 1e-5);
  // Mean pooling over the real tokens.
  torch::Tensor mean = PoolHidden(out.hidden, mask, Pooling::kMean);
  EXPECT_LT(MaxAbsDiff(mean[1], out.hidden[1].narrow(0, 0, 5).mean(0)), 1e-6);
  EXPECT_LT(MaxAbsDiff(mean[0], out.hidden[0].mean(0)), 1e-6);
}

TEST(ModelTransformerTest, CreateNamesTheTensorAndBothShapes) {
  auto model = TinyModel();
  NamedTensors weights = model->NamedParameters();
  for (auto& [name, t] : weights) {
    if (name == "model.layers.1.mlp.up_proj.weight") t = torch::zeros({47, 32});
  }
  auto bad = Model::Create(model->config(), weights);
  ASSERT_FALSE(bad.ok());
  const std::string message(bad.status().message());
  EXPECT_NE(message.find("model.layers.1.mlp.up_proj.weight"), std::string::npos) << message;
  EXPECT_NE(message.find("[47, 32]"), std::string::npos) << message;
  EXPECT_NE(message.find("[48, 32]"), std::string::npos) << message;

  NamedTensors missing = model->NamedParameters();
  missing.erase(missing.begin() + 3);
  auto no = Model::Create(model->config(), missing);
  ASSERT_FALSE(no.ok());
  EXPECT_NE(std::string(no.status().message()).find("missing tensor"), std::string::npos);

  NamedTensors extra = model->NamedParameters();
  extra.emplace_back("model.layers.9.foo", torch::zeros({2}));
  auto ex = Model::Create(model->config(), extra);
  ASSERT_FALSE(ex.ok());
  EXPECT_NE(std::string(ex.status().message()).find("model.layers.9.foo"), std::string::npos);
}

TEST(ModelTransformerTest, ForwardRejectsBadInputs) {
  auto model = TinyModel();
  EXPECT_THROW(model->Forward(torch::full({1, 3}, 50, torch::kLong)), c10::Error);
  EXPECT_THROW(model->Forward(torch::full({1, 3}, -1, torch::kLong)), c10::Error);
  EXPECT_THROW(model->Forward(torch::zeros({3}, torch::kLong)), c10::Error);
  EXPECT_THROW(model->Forward(torch::zeros({1, 33}, torch::kLong)), c10::Error);  // > max_seq_len
  ForwardOptions options;
  options.first_trainable_block = 4;
  EXPECT_THROW(model->Forward(torch::zeros({1, 3}, torch::kLong), options), c10::Error);
}

}  // namespace
}  // namespace fedfm::model
