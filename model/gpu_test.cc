// The CUDA path against the CPU path and the transformers references.
// Every test skips without a CUDA device.
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <limits>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/attention.h"
#include "model/inference.h"
#include "model/internal/fused_ops.h"
#include "model/loader.h"
#include "model/rms_norm.h"
#include "model/tasks.h"
#include "model/torch_bridge.h"
#include "protocols/safetensors.h"

namespace fedfm::model {
namespace {

const char* const kFixtures[] = {"tests/fixtures/hf_llama", "tests/fixtures/hf_qwen2"};

#define SKIP_WITHOUT_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

torch::Tensor Reference(const std::string& fixture, const std::string& name) {
  auto st = protocols::ReadSafetensors(fixture + "/reference.safetensors");
  EXPECT_TRUE(st.ok()) << st.status();
  const protocols::Tensor* t = st->tensors.Find(name);
  EXPECT_NE(t, nullptr) << name;
  return t == nullptr ? torch::Tensor() : ToTorch(*t).clone();
}

double RelativeError(const torch::Tensor& got, const torch::Tensor& want) {
  torch::Tensor g = got.to(torch::kCPU, torch::kFloat), w = want.to(torch::kCPU, torch::kFloat);
  return (g - w).abs().max().item<double>() / w.abs().max().item<double>();
}

TEST(ModelGpuTest, HfLogitsMatchTransformersInFloat32AndBfloat16) {
  SKIP_WITHOUT_CUDA();
  for (const char* fixture : kFixtures) {
    auto f32 = LoadModel(fixture, ModelOptions{torch::kFloat, torch::kCUDA});
    auto bf16 = LoadModel(fixture, ModelOptions{torch::kBFloat16, torch::kCUDA});
    ASSERT_TRUE(f32.ok()) << f32.status();
    ASSERT_TRUE(bf16.ok()) << bf16.status();
    for (int i = 0; i < 3; ++i) {
      const std::string n = std::to_string(i);
      torch::Tensor ids = Reference(fixture, "input_ids." + n);
      EXPECT_LT(RelativeError((*f32)->Forward(ids).logits, Reference(fixture, "logits." + n)), 1e-4) << fixture;
      EXPECT_LT(RelativeError((*bf16)->Forward(ids).logits, Reference(fixture, "logits_bf16_cuda." + n)), 0.03)
          << fixture;
    }
  }
}

TEST(ModelGpuTest, AttentionPathsAgreeOnCuda) {
  SKIP_WITHOUT_CUDA();
  at::Generator gen = at::detail::createCPUGenerator(3);
  auto rand = [&](std::vector<int64_t> shape) { return torch::randn(shape, gen).to(torch::kCUDA); };
  torch::Tensor k = rand({2, 2, 10, 16}), v = rand({2, 2, 10, 16});
  for (int64_t tq : {10, 4, 1}) {
    torch::Tensor q = rand({2, 4, tq, 16});
    torch::Tensor want = CausalAttentionReference(q.cpu(), k.cpu(), v.cpu());
    EXPECT_LT((CausalAttention(q, k, v).cpu() - want).abs().max().item<double>(), 1e-4) << tq;
    EXPECT_LT((CausalAttentionReference(q, k, v).cpu() - want).abs().max().item<double>(), 1e-4) << tq;
  }
}

TEST(ModelGpuTest, GreedyGenerationMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  auto cpu = LoadModel("assets/stories260K/stories260K.bin");
  auto cuda = LoadModel("assets/stories260K/stories260K.bin", ModelOptions{torch::kFloat, torch::kCUDA});
  ASSERT_TRUE(cpu.ok() && cuda.ok());
  SamplingOptions greedy;
  greedy.max_new_tokens = 40;
  EXPECT_EQ(Generate(**cuda, {1}, greedy), Generate(**cpu, {1}, greedy));
}

TEST(ModelGpuTest, TrainingGradientsMatchCpu) {
  SKIP_WITHOUT_CUDA();
  auto cpu = LoadModel(kFixtures[1]);
  auto cuda = LoadModel(kFixtures[1], ModelOptions{torch::kFloat, torch::kCUDA});
  ASSERT_TRUE(cpu.ok() && cuda.ok());
  torch::Tensor ids = Reference(kFixtures[1], "input_ids.0");
  torch::Tensor grads[2];
  int index = 0;
  for (const auto* model : {&*cpu, &*cuda}) {
    BlockWeights top = (*model)->CloneBlock(2, /*requires_grad=*/true);
    ForwardOptions options;
    options.block_overrides[2] = &top;
    options.first_trainable_block = 2;
    NextTokenLoss((*model)->Forward(ids, options).logits, ids).backward();
    grads[index++] = top.weight[static_cast<int>(Projection::kDown)].grad().cpu();
  }
  EXPECT_LT(RelativeError(grads[1], grads[0]), 1e-3);
}

// The fused cross-entropy against torch's over float32 logits, value and
// gradient, in each logit dtype; vocabularies that take the 16-byte loads and
// one that cannot (v = 1001); ignored rows; a loss scaled before backward.
TEST(ModelGpuTest, FusedCrossEntropyMatchesTorch) {
  SKIP_WITHOUT_CUDA();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  for (torch::ScalarType dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    for (int64_t v : {64, 1001, 32000}) {
      const int64_t n = 37;
      torch::Tensor logits = (torch::randn({n, v}, gen) * 3).to(torch::kCUDA, dtype);
      torch::Tensor labels = torch::randint(0, v, {n}, gen, torch::kLong);
      labels.index_put_({torch::arange(0, n, 5)}, kLossIgnoreIndex);
      labels = labels.cuda();
      torch::Tensor mine = logits.clone().set_requires_grad(true);
      torch::Tensor fused = internal::FusedCrossEntropyMean(mine, labels, kLossIgnoreIndex);
      if (!fused.defined()) GTEST_SKIP() << "fedfm built without FEDFM_CUDA";
      (fused * 0.75).backward();
      torch::Tensor theirs = logits.clone().set_requires_grad(true);
      torch::Tensor want = torch::nn::functional::cross_entropy(
          theirs.to(torch::kFloat), labels, torch::nn::functional::CrossEntropyFuncOptions().ignore_index(kLossIgnoreIndex));
      (want * 0.75).backward();
      const std::string what = std::string(c10::toString(dtype)) + " v=" + std::to_string(v);
      EXPECT_EQ(fused.scalar_type(), torch::kFloat) << what;
      EXPECT_NEAR(fused.item<double>(), want.item<double>(), 1e-5 * std::abs(want.item<double>())) << what;
      EXPECT_EQ(mine.grad().scalar_type(), dtype) << what;
      // Both gradients are rounded to the logits' dtype: within two of its ulps.
      const double ulp = dtype == torch::kFloat ? 1e-5 : dtype == torch::kHalf ? 1e-3 : 8e-3;
      EXPECT_LT(RelativeError(mine.grad(), theirs.grad()), 2 * ulp) << what;
      EXPECT_EQ(mine.grad().index({torch::arange(0, n, 5)}).abs().max().item<double>(), 0.0) << what;
    }
  }
}

TEST(ModelGpuTest, FusedCrossEntropyPropagatesBadValues) {
  SKIP_WITHOUT_CUDA();
  torch::Tensor logits = torch::randn({4, 256}, torch::kCUDA).to(torch::kBFloat16);
  torch::Tensor labels = torch::tensor({1, 2, 3, 4}, torch::kLong).cuda();
  if (!internal::FusedCrossEntropyMean(logits, labels, kLossIgnoreIndex).defined()) {
    GTEST_SKIP() << "fedfm built without FEDFM_CUDA";
  }
  EXPECT_TRUE(std::isfinite(internal::FusedCrossEntropyMean(logits, labels, kLossIgnoreIndex).item<float>()));
  torch::Tensor nan_logits = logits.clone();
  nan_logits.index_put_({2, 0}, std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE(std::isnan(internal::FusedCrossEntropyMean(nan_logits, labels, kLossIgnoreIndex).item<float>()));
  torch::Tensor out_of_range = torch::tensor({1, 2, 256, 4}, torch::kLong).cuda();
  EXPECT_TRUE(std::isnan(internal::FusedCrossEntropyMean(logits, out_of_range, kLossIgnoreIndex).item<float>()));
  torch::Tensor all_ignored = torch::full({4}, kLossIgnoreIndex, torch::kLong).cuda();
  EXPECT_TRUE(std::isnan(internal::FusedCrossEntropyMean(logits, all_ignored, kLossIgnoreIndex).item<float>()));
  // A -inf logit (masked) is fine, and the loss of a CausalLmLoss call takes this path.
  torch::Tensor masked = logits.clone();
  masked.index_put_({0, 5}, -std::numeric_limits<float>::infinity());
  const float fused = CausalLmLoss(masked.unsqueeze(0), labels.unsqueeze(0)).item<float>();
  const float want = torch::nn::functional::cross_entropy(masked.to(torch::kFloat), labels).item<float>();
  EXPECT_NEAR(fused, want, 1e-5 * std::abs(want));
}

// The fused RMSNorm against the ATen expression: outputs within one rounding
// of the dtype, gradients (x and w) at least as close to a float64 reference
// as the ATen expression's own (or within float32 noise).
TEST(ModelGpuTest, FusedRmsNormMatchesTheReference) {
  SKIP_WITHOUT_CUDA();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  for (torch::ScalarType dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    for (int64_t d : {2048, 1001}) {
      const std::string what = std::string(c10::toString(dtype)) + " d=" + std::to_string(d);
      const torch::Tensor x0 = (torch::randn({3, 5, d}, gen) * 2).to(torch::kCUDA, dtype);
      const torch::Tensor w0 = (1 + 0.1 * torch::randn({d}, gen)).to(torch::kCUDA, dtype);
      const torch::Tensor dy = torch::randn({3, 5, d}, gen).to(torch::kCUDA, dtype);
      torch::Tensor grads[3][2], outs[3];
      for (int path = 0; path < 3; ++path) {  // fused, ATen, float64 ATen
        const torch::ScalarType t = path == 2 ? torch::kDouble : dtype;
        // detach: a fresh leaf per path, also where .to() returns x0 itself.
        torch::Tensor x = x0.to(t).detach().set_requires_grad(true), w = w0.to(t).detach().set_requires_grad(true);
        outs[path] = path == 0 ? internal::FusedRmsNorm(x, w, 1e-5) : RmsNormReference(x, w, 1e-5);
        if (!outs[path].defined()) GTEST_SKIP() << "fedfm built without FEDFM_CUDA";
        outs[path].backward(dy.to(t));
        grads[path][0] = x.grad();
        grads[path][1] = w.grad();
      }
      EXPECT_EQ(outs[0].scalar_type(), dtype) << what;
      const double ulp = dtype == torch::kFloat ? 1e-6 : dtype == torch::kHalf ? 1e-3 : 8e-3;
      EXPECT_LT(RelativeError(outs[0], outs[1]), 2 * ulp) << what;
      for (int g = 0; g < 2; ++g) {
        const double fused_err = RelativeError(grads[0][g], grads[2][g]);
        const double aten_err = RelativeError(grads[1][g], grads[2][g]);
        EXPECT_LT(fused_err, std::max(2 * aten_err, 1e-5)) << what << (g == 0 ? " dx" : " dw");
      }
    }
  }
}

TEST(ModelGpuTest, BenchReportsCudaMemory) {
  SKIP_WITHOUT_CUDA();
  BenchRequest request;
  request.model = kFixtures[0];
  request.batch = 2;
  request.seq_len = 32;
  request.iters = 2;
  request.target = RunTarget{"bf16", "cuda"};
  auto result = BenchForward(request);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GT(result->forward.peak_memory_bytes, 0);
  EXPECT_GT(result->train_step.peak_memory_bytes, 0);
}

}  // namespace
}  // namespace fedfm::model
