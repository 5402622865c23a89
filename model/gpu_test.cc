// The CUDA path against the CPU path and the transformers references.
// Every test skips without a CUDA device.
#include <ATen/CPUGeneratorImpl.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/attention.h"
#include "model/inference.h"
#include "model/loader.h"
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
